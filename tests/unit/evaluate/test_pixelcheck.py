from __future__ import annotations

import json

import numpy as np
import pytest

from reelforge.data.store import load_clips, read_manifest
from reelforge.evaluate.pixelcheck import GroundTruth, chance, check, check_videos, read_video


@pytest.fixture(scope="module")
def labelled(demo, ingested):
    """The ingested demo clips (H.264, cut and resized by ingest) with their ground-truth attributes."""
    truth = GroundTruth(demo[0] / "ground_truth.json")
    manifest = read_manifest(ingested)
    labels = truth.label_clips(manifest)
    clips = load_clips(ingested)
    ids = list(manifest.clip_id)
    return truth, np.stack([clips[c] for c in ids]), [labels[c] for c in ids]


def test_prompts_parse_against_the_vocabulary_of_the_ground_truth_file(demo):
    truth = GroundTruth(demo[0] / "ground_truth.json")
    assert truth.parse_prompt("A red circle moves left over a black background") == {
        "color": "red", "shape": "circle", "direction": "left", "background": "black"
    }  # fmt: skip
    assert truth.parse_prompt("a cat on a sofa") is None
    assert truth.parse_prompt("a pink circle moves left over a black background") is None


def test_the_vocabulary_and_palette_come_from_the_file_not_the_demo_code(demo, tmp_path):
    data = json.loads((demo[0] / "ground_truth.json").read_text())
    data["attributes"]["color"] = [*data["attributes"]["color"], "pink"]
    data["palette"]["color"]["pink"] = [255, 105, 180]
    (tmp_path / "truth.json").write_text(json.dumps(data))
    truth = GroundTruth(tmp_path / "truth.json")
    assert truth.parse_prompt("a pink circle moves left over a black background")["color"] == "pink"
    assert truth.palette["color"]["pink"] == [255, 105, 180]


def test_every_clip_gets_its_shot_labels(demo, ingested):
    manifest = read_manifest(ingested)
    labels = GroundTruth(demo[0] / "ground_truth.json").label_clips(manifest)
    assert set(labels) == set(manifest.clip_id)


def test_the_check_reads_every_attribute_of_real_demo_clips(labelled):
    """The validation the check's thresholds must pass: at least 0.95 per attribute on real clips."""
    truth, videos, labels = labelled
    right = check_videos(videos, labels, truth.palette)
    accuracy = {k: float(r.mean()) for k, r in right.items()}
    assert len(videos) >= 15
    assert min(accuracy.values()) >= 0.95, accuracy


def _first_right(labelled) -> tuple[dict, np.ndarray, dict]:
    truth, videos, labels = labelled
    right = [check(read_video(v, truth.palette), lab)["all"] for v, lab in zip(videos, labels, strict=True)]
    i = right.index(True)
    return truth.palette, videos[i].copy(), labels[i]


def test_crafted_failures_fail(labelled):
    palette, video, wanted = _first_right(labelled)
    bg = np.asarray(palette["background"][wanted["background"]], np.uint8)

    noise = np.random.default_rng(0).integers(0, 256, video.shape, dtype=np.uint8)
    reading = read_video(noise, palette)
    assert reading.background is None and not check(reading, wanted)["single_blob"]

    blank = np.broadcast_to(bg, video.shape).copy()
    r = check(read_video(blank, palette), wanted)
    assert r["background"] and not (r["color"] or r["single_blob"] or r["direction"] or r["all"])

    other = next(n for n in palette["background"] if n != wanted["background"])
    repainted = video.copy()
    is_bg = np.linalg.norm(video.astype(float) - bg, axis=-1) < 40
    repainted[is_bg] = palette["background"][other]
    r = check(read_video(repainted, palette), wanted)
    assert not r["background"] and r["color"]

    flash = video.copy()  # the background changes for a quarter of the frames, then comes back
    flash[len(video) // 2 : len(video) // 2 + len(video) // 4][
        is_bg[len(video) // 2 : len(video) // 2 + len(video) // 4]
    ] = palette["background"][other]
    r = check(read_video(flash, palette), wanted)
    assert not r["background"] and r["color"]

    two = video.copy()  # the same shape again, mirrored: two blobs
    shape = np.linalg.norm(video.astype(float) - bg, axis=-1) > 60
    mirrored = shape[:, ::-1, ::-1]
    two[mirrored & ~shape] = video[:, ::-1, ::-1][mirrored & ~shape]
    assert not check(read_video(two, palette), wanted)["single_blob"]

    still = np.repeat(video[:1], len(video), axis=0)
    assert read_video(still, palette).direction is None

    reversed_ = video[::-1]
    assert not check(read_video(reversed_, palette), wanted)["direction"]


def test_chance_levels(demo):
    c = chance(GroundTruth(demo[0] / "ground_truth.json").attributes)
    assert c["color"] == c["background"] == c["direction"] == 0.25 and c["shape"] == pytest.approx(1 / 3)
    assert c["single_blob"] == 0.5 and c["all"] == pytest.approx(0.25**3 / 3 / 2)
