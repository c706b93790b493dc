"""Evaluate stage: the new model version and the current champion, same prompts, seeds and extractors, one
run. What each metric means is in `reelforge.evaluate.scoring`; the protocol is in evaluation/README.md.

Real and generated clips are compared bucket by bucket (one clip shape each): the headline scores, which
the gates read, are those of the bucket with the most validation clips, generated at its shape; every other
bucket with at least 2 validation clips is scored the same way at its own shape, and reported beside
(`bucket.<name>.*`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow
import numpy as np

from reelforge.caption.captioner import read_captions
from reelforge.config import EvaluateConfig, EvaluateParams, ReadParams
from reelforge.data.store import StoredClips, read_manifest, stream_clips
from reelforge.evaluate.metrics import paired_fd_deltas, paired_mean_deltas
from reelforge.evaluate.pixelcheck import GroundTruth, chance
from reelforge.evaluate.record import log_samples, log_side_by_side, record_on_version
from reelforge.evaluate.scoring import Extractors, PixelCheck, RealSet, Scored, score_videos
from reelforge.files import write_json_atomic
from reelforge.registry.models import Registration, load_pipeline
from reelforge.registry.tracking import champion_version, run_tags, setup

if TYPE_CHECKING:
    from reelforge.model.pipeline import TextToVideoPipeline


@dataclass(frozen=True)
class EvaluateResult:
    eval_run_id: str
    real: dict[str, float]  # the real validation clips' own scores
    scores: dict[str, dict]  # role (candidate, champion) -> version and metrics


def read_prompts(path: str | Path) -> list[str]:
    prompts = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    if not prompts:
        raise ValueError(f"prompt set {path} is empty")
    return prompts


def run(
    cfg: EvaluateConfig,
    registration_path: str | Path,
    clips_dir: str | Path,
    captions_dir: str | Path,
    prompts_path: str | Path,
    ground_truth_path: str | Path | None,
    metrics_path: str | Path,
) -> EvaluateResult:
    """Score the registered candidate and the champion on `prompts_path`; write the report to
    `metrics_path`. A ground-truth file that exists adds the demo's pixel check."""
    ev = cfg.evaluate
    setup(cfg.registry)
    reg = Registration.load(registration_path)
    champion = champion_version(reg.model_name, cfg.registry.alias)
    ex = Extractors.load(ev, captions_dir)

    # 1. The real set: validation clips (sources never seen in training), their own scores and floors.
    real = _real_side(ev, cfg.read, ex, Path(clips_dir), captions_dir, ground_truth_path)

    # 2. Every version generates the same prompts with the same seeds.
    prompts = read_prompts(prompts_path)
    prompt_list = [p for p in prompts for _ in range(ev.samples_per_prompt)]
    seeds = [ev.seed + i for i in range(len(prompt_list))]
    versions = {
        "candidate": reg.version,
        **({"champion": champion} if champion not in (None, reg.version) else {}),
    }
    protocol = _protocol(cfg, ex, real, len(prompt_list), prompts_path, prompts)
    protocol |= {"candidate_version": reg.version, "champion_version": champion}

    # 3. One MLflow run: protocol, real scores and floors, each version's samples and scores, the paired test.
    with mlflow.start_run(run_name=f"evaluate v{reg.version}", tags=run_tags("evaluate")) as active:
        mlflow.log_params({f"protocol.{k}": v for k, v in protocol.items()})
        real.log()
        scored, videos, buckets = {}, {}, {}
        for role, version in versions.items():
            scored[role], videos[role], fps, buckets[role] = _score_version(
                ev, ex, real, role, reg.model_name, version, prompt_list, seeds, len(prompts)
            )
        if "champion" in videos:  # one grid to compare by eye: the same prompts and seeds side by side
            log_side_by_side(
                videos["candidate"], videos["champion"], f"candidate_v{reg.version}_vs_champion_v{champion}",
                ev.samples_per_prompt, min(ev.gif_prompts, len(prompts)), fps,
            )  # fmt: skip
        comparison = _paired(scored, real, ev) if "champion" in scored and ev.bootstrap else None
        if comparison:
            mlflow.log_metrics({f"paired.{k}_mean": float(np.mean(comparison[k])) for k in PAIRED})
        results = {role: {"version": versions[role], **sc.scores} for role, sc in scored.items()}
        record_on_version(
            reg.model_name,
            reg.version,
            scored["candidate"].scores,
            active.info.run_id,
            reg.run_id,
            ex.ref.name,
        )

    # 4. The report promote reads.
    write_json_atomic(metrics_path, {
        "model_name": reg.model_name, "eval_run_id": active.info.run_id, "protocol": protocol,
        "real": real.scores, "floor": real.floors, "paired": comparison, **results,
        "buckets": {
            name: {"n_real": len(other.ref), "floor": other.floors(ev.bootstrap, ev.seed)}
            | {role: buckets[role][name] for role in buckets}
            for name, (_, other) in real.others.items()
        },
    })  # fmt: skip
    return EvaluateResult(active.info.run_id, real.scores, results)


# Paired candidate - champion differences the promote gate tests (bootstrap distributions in the report).
PAIRED = ("fvd_ref_delta", "clip_score_ref_delta")


@dataclass
class _RealSide:
    bucket: str  # the headline bucket's name, width x height x frames
    shape: tuple[int, int, int]  # (frames, width, height) its clips have, and generated clips are made at
    set: RealSet  # the features of its real validation clips
    scores: dict[str, float]  # their own scores against their given captions (and the pixel check's accuracy)
    floors: dict[str, float]  # real-vs-real split-half distances (empty: too few clips)
    given_captions: int  # how many of them carry a given (human) caption, the clip-score baseline's n
    pixel: PixelCheck | None
    train_captions: frozenset[str]  # lower-cased captions of the training clips (prompts must not be one)
    others: dict[str, tuple[tuple[int, int, int], RealSet]]  # other buckets: (frames, width, height), clips

    def log(self) -> None:
        """Into the active run: the real clips' own scores, the floors and the pixel check's chance levels."""
        mlflow.log_metrics({f"real.{k}": v for k, v in self.scores.items()})
        mlflow.log_metrics({f"floor.{k}": v for k, v in self.floors.items()})
        if self.pixel:
            chances = chance(self.pixel.truth.attributes)
            mlflow.log_metrics({f"chance.pixel_{a}_acc": v for a, v in chances.items()})


class _ValClips:
    """The validation clips, streamed from the store a batch at a time whenever a score asks for them: an
    evaluation holds their features, never the clips. A clip that does not decode is skipped and named
    (within `read.max_unreadable`); `readable` leaves out those met so far."""

    def __init__(self, clips_dir: Path, ids: list[str], read: ReadParams):
        self.stored = StoredClips(clips_dir, ids, read.max_unreadable, read.shards_url)
        self.index = {c: i for i, c in enumerate(self.stored.ids(np.arange(len(self.stored))))}
        self.workers = read.loader_workers

    def __call__(self, ids: list[str]) -> Iterator[np.ndarray]:
        """The clips `ids` (decodable ones) as (B, T, H, W, 3) uint8 batches, in the order given."""
        pos = np.array([self.index[c] for c in ids], np.int64)
        batches = [pos[i : i + READ_BATCH] for i in range(0, len(pos), READ_BATCH)]
        for _, frames in stream_clips(self.stored, batches, self.workers):
            yield frames

    def readable(self, ids: list[str]) -> list[str]:
        failed = {u["clip_id"] for u in self.stored.unreadable}
        return [c for c in ids if c not in failed]


# Validation clips decoded and scored at once.
READ_BATCH = 64


def _real_side(
    ev: EvaluateParams, read: ReadParams, ex: Extractors, clips_dir: Path, captions_dir: str | Path,
    ground_truth_path: str | Path | None,
) -> _RealSide:  # fmt: skip
    """The real validation clips' features, floors and own scores. Their clip-score baseline uses only the
    captions they came with: scoring them against captions the same captioner wrote would be circular."""
    manifest = read_manifest(clips_dir)
    val = manifest[manifest.split == "val"]
    counts = val.bucket.value_counts(sort=True)  # the headline bucket first
    if len(val) < 2 or counts.iloc[0] < 2:
        raise ValueError(
            "evaluation needs at least 2 validation clips of one bucket; raise ingest.val_fraction or add "
            "videos"
        )
    clips = _ValClips(clips_dir, list(val.clip_id), read)
    sets, shapes = {}, {}
    for name in counts.index:  # features first: they read every clip, so `readable` knows them all after
        rows = val[val.bucket == name]
        first = rows.iloc[0]
        shapes[name] = (int(first.num_frames), int(first.width), int(first.height))
        if len(rows) >= 2:
            sets[name] = RealSet.of(ex, clips(list(rows.clip_id)))
    headline = counts.index[0]
    others = {n: (shapes[n], s) for n, s in sets.items() if n != headline and len(s.ref) >= 2}
    ids = clips.readable(list(val[val.bucket == headline].clip_id))
    captions = read_captions(captions_dir).set_index("clip_id")
    given = [c for c in ids if captions.caption_source[c] == "given"]
    scores = {}
    if len(given) >= 2:
        texts = [captions.caption[c] for c in given]
        scores = score_videos(ex, clips(given), texts, None, ev.bootstrap, ev.seed).scores
    pixel = None
    has_truth = ground_truth_path and Path(ground_truth_path).is_file()
    truth = GroundTruth(ground_truth_path) if has_truth else None
    if truth and truth.palette is None:  # written before palettes were recorded: no check, and say why
        print(f"pixel check off: {ground_truth_path} has no palette (rewrite it with `reelforge demo-data`)")
    elif truth:
        pixel = PixelCheck.of(ev, truth, manifest, ids, clips)
        scores |= pixel.real_accuracy
    train_captions = frozenset(
        c.lower() for c in captions.caption[manifest[manifest.split == "train"].clip_id]
    )
    real = sets[headline]
    floors = real.floors(ev.bootstrap, ev.seed)
    return _RealSide(
        headline, shapes[headline], real, scores, floors, len(given), pixel, train_captions, others
    )


def _score_version(
    ev: EvaluateParams, ex: Extractors, real: _RealSide, role: str, name: str, version: str,
    prompt_list: list[str], seeds: list[int], n_prompts: int,
) -> tuple[Scored, np.ndarray, float, dict[str, dict]]:  # fmt: skip
    """Inside the evaluation run: generate with the version's own settings at the headline bucket's shape,
    score, log metrics and samples; then each other bucket at its shape. The headline scores, the videos,
    their frame rate, and the other buckets' scores."""
    pipeline = load_pipeline(name, version)
    mlflow.log_params({f"protocol.{role}.{k}": v for k, v in pipeline.generation_config.items()})
    frames, width, height = real.shape
    if problem := pipeline.shape_problem(frames, width, height):
        raise ValueError(f"{role} v{version} cannot be scored on bucket {real.bucket}: {problem}")
    rows = min(ev.gif_prompts, n_prompts)
    head: list[np.ndarray] = []  # the GIF rows' videos, kept from the stream
    videos = generated(
        pipeline, prompt_list, seeds, real.shape, ev.batch_size, rows * ev.samples_per_prompt, head
    )
    scored = score_videos(ex, videos, prompt_list, real.set, ev.bootstrap, ev.seed, real.pixel)
    mlflow.log_metrics({f"{role}.{k}": v for k, v in scored.scores.items()})
    head = np.asarray(head)  # (rows x samples per prompt, T, H, W, 3); empty without GIF rows
    log_samples(head, f"{role}_v{version}", ev.samples_per_prompt, rows, pipeline.fps)
    buckets = {}
    for bucket, (shape, other) in real.others.items():
        if pipeline.shape_problem(*shape):  # not trained at this shape: nothing to score
            t, w, h = shape
            buckets[bucket] = {"not_scored": f"v{version} was not trained at {w}x{h}x{t}"}
            continue
        pick = other_bucket_samples(len(prompt_list), n_prompts, other.half)
        prompts = [prompt_list[i] for i in pick]
        videos = generated(pipeline, prompts, [seeds[i] for i in pick], shape, ev.batch_size, 0, [])
        buckets[bucket] = score_videos(ex, videos, prompts, other, ev.bootstrap, ev.seed).scores
        buckets[bucket]["n_generated"] = len(pick)
        mlflow.log_metrics({f"{role}.bucket.{bucket}.{k}": v for k, v in buckets[bucket].items()})
    return scored, head, pipeline.fps, buckets


def generated(
    pipeline: TextToVideoPipeline, prompts: list[str], seeds: list[int], shape: tuple[int, int, int],
    batch_size: int, keep: int, head: list[np.ndarray],
) -> Iterator[np.ndarray]:  # fmt: skip
    """The videos of `prompts` x `seeds` at `shape` (frames, width, height), generated `batch_size` at a
    time as they are scored; the first `keep` are also put in `head`."""
    frames, width, height = shape
    for i in range(0, len(prompts), batch_size):
        batch = pipeline.generate(
            prompts[i : i + batch_size],
            seeds[i : i + batch_size],
            num_frames=frames,
            width=width,
            height=height,
        )
        head += list(batch[: max(keep - len(head), 0)])
        yield batch


def other_bucket_samples(n_samples: int, n_prompts: int, half: int) -> list[int]:
    """Which of the headline's prompt x seed samples (prompt-major, `n_samples` / `n_prompts` per prompt) a
    reported bucket generates: every prompt, with as few seeds each as its floor's n (`half`) needs. A
    bucket with few validation clips gets few videos: no more than its distance at the floor's n uses."""
    per_prompt = n_samples // n_prompts
    need = min(per_prompt, max(1, -(-half // n_prompts)))
    return [i for i in range(n_samples) if i % per_prompt < need]


def _paired(scored: dict[str, Scored], real: _RealSide, ev: EvaluateParams) -> dict:
    """Candidate minus champion, bootstrapped over the same prompts and seeds (and the real clips)."""
    cand, champ = scored["candidate"], scored["champion"]
    return {
        "n_pairs": len(cand.clip_score_ref),
        "resamples": ev.bootstrap,
        "fvd_ref_delta": paired_fd_deltas(
            real.set.ref, cand.ref_features, champ.ref_features, ev.bootstrap, ev.seed
        ).tolist(),
        "clip_score_ref_delta": paired_mean_deltas(
            cand.clip_score_ref, champ.clip_score_ref, ev.bootstrap, ev.seed
        ).tolist(),
    }


def _protocol(
    cfg: EvaluateConfig, ex: Extractors, real: _RealSide, n_generated: int, prompts_path: str | Path,
    prompts: list[str],
) -> dict:  # fmt: skip
    """What produced every number of this run (each version's own sampling settings are logged beside)."""
    ev, n_real = cfg.evaluate, len(real.set.ref)
    return {
        "extractor": ex.ref.name,
        "extractor_sha256": ex.ref.sha256,
        "n_real": n_real,
        "n_generated": n_generated,
        "floor_n": real.set.half,
        "floor": f"real half A vs half B, {real.set.half} clips each; gated distances (*_floor_n) are half A "
        f"vs {real.set.half} generated clips (a fixed seeded subset)",
        "real_clip_score_captions": f"given captions of {real.given_captions} of {n_real} validation clips",
        "fvd_extractor": ex.i3d.name if ex.i3d else None,
        "fvd_extractor_sha256": ex.i3d.sha256 if ex.i3d else None,
        "fvd_metric": ex.i3d.metric if ex.i3d else None,  # fvd only for the pinned Kinetics-400 conversion
        "clip_score_model": ex.clip.name if ex.clip else None,
        "clip_score_model_sha256": ex.clip.sha256 if ex.clip else None,
        "pixel_check": "demo palette from the ground-truth file, read from pixels" if real.pixel else None,
        "bootstrap_resamples": ev.bootstrap,
        "ci_level": 0.95,
        "paired_test": "candidate - champion, bootstrap over the same prompt/seed pairs and the real clips",
        "prompt_set": str(prompts_path),
        "prompts": len(prompts),
        "prompts_equal_to_a_training_caption": sum(p.lower() in real.train_captions for p in prompts),
        "samples_per_prompt": ev.samples_per_prompt,
        "seed": ev.seed,
        "real_set": "validation split",
        "bucket": f"{real.bucket} (the most validation clips); other buckets' scores under bucket.<name>, "
        "from each prompt's first seeds, as many as their floor's n needs (bucket.<name>.n_generated)",
    }
