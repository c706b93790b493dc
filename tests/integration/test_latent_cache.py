"""The latent cache: chunk files keyed by the autoencoder's weights, encoded in this process or by a Ray
Data actor pool (a local Ray cluster) to the same bytes, resumed after a kill, and read back a batch at a
time."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from reelforge.config import LatentParams
from reelforge.data.store import StoredClips
from reelforge.files import dir_sha256
from reelforge.model.autoencoder import Autoencoder
from reelforge.train.data import StreamedPixels
from reelforge.train.latents import INDEX, cache_folder, cached_latents
from tests.tiny_models import save_tiny_vae

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def vae(tmp_path_factory):
    return save_tiny_vae(tmp_path_factory.mktemp("vae"))


def _build(vae, pixels, cache, **kw):
    return cached_latents(
        str(vae), dir_sha256(vae), pixels, "clips-key", cache, LatentParams(chunk_clips=4, **kw)
    )


def test_local_and_ray_actors_write_the_same_cache_and_it_reads_back_by_batch(ingested, vae, tmp_path):
    pixels = StreamedPixels(StoredClips(ingested))
    local = _build(vae, pixels, tmp_path / "local")
    ray = _build(vae, pixels, tmp_path / "ray", executor="ray", actors=2)
    folders = [cache_folder(tmp_path / c, dir_sha256(vae), "clips-key") for c in ("local", "ray")]
    names = sorted(p.name for p in folders[0].glob("*.npy"))
    assert len(names) == -(-len(pixels) // 4) > 2 and names == sorted(
        p.name for p in folders[1].glob("*.npy")
    )
    for name in names:
        assert (folders[0] / name).read_bytes() == (folders[1] / name).read_bytes(), name

    idx = [5, 0, len(pixels) - 1]
    expected = Autoencoder(str(vae)).encode(pixels[idx])
    assert torch.allclose(local[idx], expected, atol=1e-5) and torch.equal(local[idx], ray[idx])
    # In DataLoader workers (each maps the files itself): the same rows.
    loader = DataLoader(local, batch_size=None, sampler=[np.array(idx)], num_workers=2)
    assert torch.equal(next(iter(loader)), local[idx])


def test_a_build_killed_midway_resumes_with_the_chunks_missing(ingested, vae, tmp_path):
    pixels = StreamedPixels(StoredClips(ingested))
    _build(vae, pixels, tmp_path)
    folder = cache_folder(tmp_path, dir_sha256(vae), "clips-key")
    chunks = sorted(folder.glob("*.npy"))
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in chunks}
    # What a kill leaves: no index, a chunk never written, one being written under its temporary name.
    (folder / INDEX).unlink()
    chunks[1].unlink()
    (folder / f"{chunks[1].stem}.partial999").write_bytes(b"half a chunk")
    again = _build(vae, pixels, tmp_path)
    after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.glob("*.npy"))}
    assert after.keys() == before.keys() and (folder / INDEX).exists() and not list(folder.glob("*.partial*"))
    assert after[chunks[1].name][0] == before[chunks[1].name][0]  # encoded again, to the same bytes
    assert all(after[n] == before[n] for n in before if n != chunks[1].name)  # the rest kept as they were
    assert again[[0, 1]].shape[0] == 2
