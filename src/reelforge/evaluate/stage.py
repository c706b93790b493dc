"""Evaluate stage: the new model version and the current champion, same prompts, seeds and extractors, one
run. What each metric means is in `reelforge.evaluate.scoring`; the protocol is in evaluation/README.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np

from reelforge.caption.captioner import read_captions
from reelforge.config import EvaluateConfig, EvaluateParams
from reelforge.data.store import load_clips, read_manifest
from reelforge.evaluate.pixelcheck import GroundTruth, chance
from reelforge.evaluate.record import log_samples, record_on_version
from reelforge.evaluate.scoring import Extractors, PixelCheck, RealSet, score_videos
from reelforge.files import write_json_atomic
from reelforge.registry.models import Registration, load_pipeline
from reelforge.registry.tracking import champion_version, setup


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
    real = _real_side(ev, ex, Path(clips_dir), captions_dir, ground_truth_path)

    # 2. Every version generates the same prompts with the same seeds.
    prompts = read_prompts(prompts_path)
    prompt_list = [p for p in prompts for _ in range(ev.samples_per_prompt)]
    seeds = [ev.seed + i for i in range(len(prompt_list))]
    versions = {
        "candidate": reg.version,
        **({"champion": champion} if champion not in (None, reg.version) else {}),
    }
    protocol = _protocol(cfg, ex, len(real.videos), len(prompt_list), prompts_path, len(prompts), real.pixel)
    protocol |= {"candidate_version": reg.version, "champion_version": champion}

    # 3. One MLflow run: protocol, real scores and floors, then each version's samples and scores.
    floors = real.set.floors()
    with mlflow.start_run(run_name=f"evaluate v{reg.version}", tags={"stage": "evaluate"}) as active:
        mlflow.log_params({f"protocol.{k}": v for k, v in protocol.items()})
        mlflow.log_metrics({f"real.{k}": v for k, v in real.scores.items()})
        if real.pixel:
            attributes = real.pixel.truth.attributes
            mlflow.log_metrics({f"chance.pixel_{a}_acc": v for a, v in chance(attributes).items()})
        mlflow.log_metrics({f"real.{k}_split_half": v for k, v in floors.items() if v is not None})
        results = {
            role: _score_version(
                ev, ex, real, role, reg.model_name, version, prompt_list, seeds, len(prompts)
            )
            for role, version in versions.items()
        }
        record_on_version(
            reg.model_name, reg.version, scores_of(results["candidate"]), active.info.run_id, reg.run_id,
            ex.ref.name,
        )  # fmt: skip

    # 4. The report promote reads.
    write_json_atomic(metrics_path, {
        "model_name": reg.model_name, "eval_run_id": active.info.run_id, "protocol": protocol,
        "real": real.scores, "real_fvd_ref_split_half": floors["fvd_ref"],
        "real_fvd_split_half": floors.get("fvd"), **results,
    })  # fmt: skip
    return EvaluateResult(active.info.run_id, real.scores, results)


@dataclass
class _RealSide:
    videos: np.ndarray  # (N, T, H, W, 3) the real validation clips
    set: RealSet
    scores: dict[str, float]  # their own scores against their captions (and the pixel check's accuracy)
    pixel: PixelCheck | None


def _real_side(
    ev: EvaluateParams, ex: Extractors, clips_dir: Path, captions_dir: str | Path,
    ground_truth_path: str | Path | None,
) -> _RealSide:  # fmt: skip
    manifest = read_manifest(clips_dir)
    val = manifest[manifest.split == "val"]
    if len(val) < 2:
        raise ValueError(
            "evaluation needs at least 2 validation clips; raise ingest.val_fraction or add videos"
        )
    clips = load_clips(clips_dir, list(val.clip_id))
    videos = np.stack([clips[c] for c in val.clip_id])
    real = RealSet.of(ex, videos)
    captions = read_captions(captions_dir).set_index("clip_id").caption
    scores = score_videos(ex, videos, [captions[c] for c in val.clip_id], None, ev.bootstrap, ev.seed)
    pixel = None
    has_truth = ground_truth_path and Path(ground_truth_path).is_file()
    truth = GroundTruth(ground_truth_path) if has_truth else None
    if truth and truth.palette is None:  # written before palettes were recorded: no check, and say why
        print(f"pixel check off: {ground_truth_path} has no palette (rewrite it with `reelforge demo-data`)")
    elif truth:
        pixel = PixelCheck.of(ev, truth, manifest, list(val.clip_id), videos)
        scores |= pixel.real_accuracy
    return _RealSide(videos, real, scores, pixel)


def _score_version(
    ev: EvaluateParams, ex: Extractors, real: _RealSide, role: str, name: str, version: str,
    prompt_list: list[str], seeds: list[int], n_prompts: int,
) -> dict:  # fmt: skip
    """Inside the evaluation run: generate with the version's own settings, score, log metrics and samples."""
    pipeline = load_pipeline(name, version)
    mlflow.log_params({f"protocol.{role}.{k}": v for k, v in pipeline.generation_config.items()})
    videos = pipeline.generate(prompt_list, seeds)
    scores = score_videos(ex, videos, prompt_list, real.set, ev.bootstrap, ev.seed)
    scores |= real.pixel.scores(videos, prompt_list) if real.pixel else {}
    mlflow.log_metrics({f"{role}.{k}": v for k, v in scores.items()})
    rows = min(ev.gif_prompts, n_prompts)
    log_samples(videos, f"{role}_v{version}", ev.samples_per_prompt, rows, pipeline.fps)
    return {"version": version, **scores}


def scores_of(result: dict) -> dict[str, float]:
    """A role's metrics without its version."""
    return {k: v for k, v in result.items() if k != "version"}


def _protocol(
    cfg: EvaluateConfig, ex: Extractors, n_real: int, n_generated: int, prompts_path: str | Path,
    n_prompts: int, pixel: PixelCheck | None,
) -> dict:  # fmt: skip
    """What produced every number of this run (each version's own sampling settings are logged beside)."""
    ev = cfg.evaluate
    return {
        "extractor": ex.ref.name,
        "extractor_sha256": ex.ref.sha256,
        "n_real": n_real,
        "n_generated": n_generated,
        "fvd_extractor": ex.i3d.name if ex.i3d else None,
        "fvd_extractor_sha256": ex.i3d.sha256 if ex.i3d else None,
        "clip_score_model": ex.clip.name if ex.clip else None,
        "clip_score_model_sha256": ex.clip.sha256 if ex.clip else None,
        "pixel_check": "demo palette from the ground-truth file, read from pixels" if pixel else None,
        "bootstrap_resamples": ev.bootstrap,
        "ci_level": 0.95,
        "prompt_set": str(prompts_path),
        "prompts": n_prompts,
        "samples_per_prompt": ev.samples_per_prompt,
        "seed": ev.seed,
        "real_set": "validation split",
        "floor": f"split-half of the real set: {n_real // 2} vs {n_real // 2} clips",
    }
