"""Evaluate stage: the new model version and the current champion, same prompts, seeds and extractor, one run.

Metrics here use the pipeline's own reference encoder (the frozen captioner), so they are named `*_ref` and
logged with that encoder's sha256 — never under the names of the standard I3D-FVD or CLIP-score.

- fvd_ref: Fréchet distance between reference-encoder features of generated clips and of the real
  validation clips (biased by sample count: compare only at equal n, which this stage guarantees).
- clip_score_ref: 100 * max(cos(video, prompt), 0) in the reference encoder's joint space.
- caption_match_ref: share of each prompt's informative words (not shared by every prompt) that the
  reference captioner reads back from the generated video: does the video show what was asked?
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import torch
from mlflow import MlflowClient

from reelforge.caption import CAPTIONER_DIR, read_captions
from reelforge.captioner import ReferenceEncoder, frames_to_tensor, load_captioner
from reelforge.clips import load_clips, read_manifest, write_json_atomic
from reelforge.config import Params
from reelforge.extractors import CLIPScorer, I3DFeatures
from reelforge.metrics import (
    bootstrap_fd,
    bootstrap_mean,
    caption_match,
    clip_style_score,
    feature_stats,
    frechet_distance,
)
from reelforge.probe import accuracy, chance, label_clips, parse_prompt, train_probe
from reelforge.text import decode, encode
from reelforge.tracking import champion_version, load_generator, setup
from reelforge.video import encode_gif, encode_mp4


def read_prompts(path: str | Path) -> list[str]:
    prompts = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    if not prompts:
        raise ValueError(f"prompt set {path} is empty")
    return prompts


def _features(ref: ReferenceEncoder, videos: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        x = frames_to_tensor(videos)
        return ref.model.video_features(x), ref.model.video_embedding(x)


@dataclass
class RealSet:
    """Features of the real validation clips, per extractor, computed once per evaluation run."""

    ref: torch.Tensor
    i3d: torch.Tensor | None


def _fd_scores(name: str, real, generated, bootstrap: int, seed: int) -> dict[str, float]:
    scores = {name: frechet_distance(*feature_stats(real), *feature_stats(generated))}
    if bootstrap:
        scores[f"{name}_ci_low"], scores[f"{name}_ci_high"] = bootstrap_fd(real, generated, bootstrap, seed)
    return scores


def _mean_scores(name: str, per_clip: torch.Tensor, bootstrap: int, seed: int) -> dict[str, float]:
    scores = {name: float(per_clip.mean())}
    if bootstrap:
        scores[f"{name}_ci_low"], scores[f"{name}_ci_high"] = bootstrap_mean(per_clip, bootstrap, seed)
    return scores


def score_videos(
    ref: ReferenceEncoder,
    videos: np.ndarray,
    prompts: list[str],
    real: RealSet | None,
    i3d: I3DFeatures | None = None,
    clip: CLIPScorer | None = None,
    bootstrap: int = 0,
    seed: int = 0,
) -> dict[str, float]:
    """Metrics of (N, T, H, W, 3) videos against their prompts and, when given, the real set.

    The standard `fvd` / `clip_score` appear only when I3D / CLIP weights were given."""
    feats, emb = _features(ref, videos)
    with torch.no_grad():
        text = ref.model.text_embedding(encode(ref.tokenizer, prompts, ref.model.cfg.max_tokens))
        read_back = [decode(ref.tokenizer, s) for s in ref.model.generate(frames_to_tensor(videos))]
    scores = _mean_scores("clip_score_ref", clip_style_score(emb, text), bootstrap, seed)
    scores["caption_match_ref"] = caption_match(read_back, prompts)
    if clip is not None:
        scores |= _mean_scores("clip_score", clip(videos, prompts), bootstrap, seed)
    if real is not None:
        scores |= _fd_scores("fvd_ref", real.ref, feats, bootstrap, seed)
        if i3d is not None:
            scores |= _fd_scores("fvd", real.i3d, i3d(videos), bootstrap, seed)
    return scores


def _attribute_probe(cfg, manifest, clips_dir, val_ids: list[str], real_videos: np.ndarray):
    """(probe, its accuracy on the real validation clips), or None without a ground-truth file."""
    if not cfg.ground_truth or not Path(cfg.ground_truth).is_file():
        return None
    labels = label_clips(manifest, cfg.ground_truth)
    train_ids = [c for c in manifest[manifest.split == "train"].clip_id if c in labels]
    clips = load_clips(clips_dir, train_ids)
    probe = train_probe(
        np.stack([clips[c] for c in train_ids]), [labels[c] for c in train_ids], cfg.probe_steps, cfg.seed
    )
    keep = [i for i, c in enumerate(val_ids) if c in labels]
    return probe, accuracy(probe, real_videos[keep], [labels[val_ids[i]] for i in keep])


def _probe_scores(probe, videos: np.ndarray, prompts: list[str]) -> dict[str, float]:
    parsed = [parse_prompt(p) for p in prompts]
    keep = [i for i, p in enumerate(parsed) if p is not None]
    if not keep:
        return {}
    acc = accuracy(probe, videos[keep], [parsed[i] for i in keep])
    return {f"probe_{a}_acc": v for a, v in acc.items()}


def _split_half(features: torch.Tensor) -> float | None:
    """Real-vs-real floor: FD between two halves of the real set (at half the sample count)."""
    half = len(features) // 2
    if half < 2:
        return None
    return frechet_distance(*feature_stats(features[:half]), *feature_stats(features[half:]))


def _sample_grid(videos: np.ndarray, per_prompt: int, rows: int) -> np.ndarray:
    """(P*S, T, H, W, 3) -> (T, rows*H, S*W, 3): one row per prompt, one column per seed."""
    n, t, h, w, c = videos.shape
    grid = videos[: rows * per_prompt].reshape(rows, per_prompt, t, h, w, c)
    return grid.transpose(2, 0, 3, 1, 4, 5).reshape(t, rows * h, per_prompt * w, c)


def run(
    params: Params,
    registration_path: str | Path | dict,
    clips_dir: str | Path,
    captions_dir: str | Path,
    metrics_path: str | Path,
) -> dict:
    cfg = params.evaluate
    setup(params.mlflow)
    reg = (
        registration_path
        if isinstance(registration_path, dict)
        else json.loads(Path(registration_path).read_text())
    )
    name, candidate = reg["model_name"], reg["version"]
    champion = champion_version(name, params.promote.alias)
    ref, i3d, clip = load_extractors(cfg, captions_dir)

    # Real reference set: validation clips (sources never seen in training).
    manifest = read_manifest(clips_dir)
    val = manifest[manifest.split == "val"]
    if len(val) < 2:
        raise ValueError(
            "evaluation needs at least 2 validation clips; raise ingest.val_fraction or add videos"
        )
    clips = load_clips(clips_dir, list(val.clip_id))
    real_videos = np.stack([clips[c] for c in val.clip_id])
    real = RealSet(_features(ref, real_videos)[0], i3d(real_videos) if i3d else None)
    floors = {"fvd_ref": _split_half(real.ref), **({"fvd": _split_half(real.i3d)} if i3d else {})}
    captions = read_captions(captions_dir).set_index("clip_id").caption
    real_scores = score_videos(
        ref,
        real_videos,
        [captions[c] for c in val.clip_id],
        None,
        clip=clip,
        bootstrap=cfg.bootstrap,
        seed=cfg.seed,
    )

    probe = _attribute_probe(cfg, manifest, clips_dir, list(val.clip_id), real_videos)
    if probe is not None:
        real_scores |= {f"probe_{a}_acc": v for a, v in probe[1].items()}

    prompts = read_prompts(cfg.prompts)
    prompt_list = [p for p in prompts for _ in range(cfg.samples_per_prompt)]
    seeds = [cfg.seed + i for i in range(len(prompt_list))]
    versions = {
        "candidate": candidate,
        **({"champion": champion} if champion and champion != candidate else {}),
    }

    protocol = {
        "extractor": ref.name,
        "extractor_sha256": ref.sha256,
        "n_real": len(real_videos),
        "n_generated": len(prompt_list),
        "fvd_extractor": i3d.name if i3d else None,
        "fvd_extractor_sha256": i3d.sha256 if i3d else None,
        "clip_score_model": clip.name if clip else None,
        "clip_score_model_sha256": clip.sha256 if clip else None,
        "attribute_probe": f"trained on {cfg.ground_truth}" if probe else None,
        "bootstrap_resamples": cfg.bootstrap,
        "ci_level": 0.95,
        "frames": params.clip.num_frames,
        "resolution": params.clip.size,
        "prompt_set": cfg.prompts,
        "prompts": len(prompts),
        "samples_per_prompt": cfg.samples_per_prompt,
        "seed": cfg.seed,
        "sample_steps": params.sample.steps,
        "guidance": params.sample.guidance,
        "real_set": "validation split",
        "floor": f"split-half of the real set: {len(real_videos) // 2} vs {len(real_videos) // 2} clips",
        "candidate_version": candidate,
        "champion_version": champion,
    }
    results: dict[str, dict] = {}
    with mlflow.start_run(run_name=f"evaluate v{candidate}", tags={"stage": "evaluate"}) as run_info:
        mlflow.log_params({f"protocol.{k}": v for k, v in protocol.items()})
        mlflow.log_metrics({f"real.{k}": v for k, v in real_scores.items()})
        if probe:
            mlflow.log_metrics({f"chance.probe_{a}_acc": v for a, v in chance().items()})
        mlflow.log_metrics({f"real.{k}_split_half": v for k, v in floors.items() if v is not None})
        for role, version in versions.items():
            generator = load_generator(name, version)
            videos = generator.generate(prompt_list, seeds)
            results[role] = {
                "version": version,
                **score_videos(ref, videos, prompt_list, real, i3d, clip, cfg.bootstrap, cfg.seed),
                **(_probe_scores(probe[0], videos, prompt_list) if probe else {}),
            }
            mlflow.log_metrics({f"{role}.{k}": v for k, v in results[role].items() if k != "version"})
            _log_samples(
                videos,
                role,
                version,
                cfg.samples_per_prompt,
                min(cfg.gif_prompts, len(prompts)),
                generator.fps,
            )
        _record_on_version(
            name, candidate, results["candidate"], run_info.info.run_id, reg["run_id"], ref.name
        )

    report = {
        "model_name": name,
        "eval_run_id": run_info.info.run_id,
        "protocol": protocol,
        "real": real_scores,
        "real_fvd_ref_split_half": floors["fvd_ref"],
        "real_fvd_split_half": floors.get("fvd"),
        **results,
    }
    write_json_atomic(metrics_path, report)
    return report


def load_extractors(cfg, captions_dir: str | Path):
    """The reference encoder (always) and the standard I3D / CLIP models (when local weights are given)."""
    ref = load_captioner(Path(captions_dir) / CAPTIONER_DIR)
    i3d_path = os.environ.get("REELFORGE_I3D_PATH") or cfg.i3d_path
    clip_path = os.environ.get("REELFORGE_CLIP_PATH") or cfg.clip_path
    return ref, I3DFeatures(i3d_path) if i3d_path else None, CLIPScorer(clip_path) if clip_path else None


def _record_on_version(
    name: str, version: str, scores: dict, eval_run_id: str, train_run_id: str, extractor: str
) -> None:
    """Metrics as tags on the model version (what serving reports) and on its training run."""
    client = MlflowClient()
    metrics = {k: v for k, v in scores.items() if k != "version"}
    for k, v in metrics.items():
        client.set_model_version_tag(name, version, f"metric.{k}", f"{v:.6g}")
        client.log_metric(train_run_id, k, v)
    client.set_model_version_tag(name, version, "eval_run_id", eval_run_id)
    client.set_model_version_tag(name, version, "metric_extractor", extractor)


def _log_samples(videos: np.ndarray, role: str, version: str, per_prompt: int, rows: int, fps: float) -> None:
    if rows == 0:
        return
    grid = _sample_grid(videos, per_prompt, rows)
    with tempfile.TemporaryDirectory() as tmp:
        gif, mp4 = Path(tmp) / f"{role}_v{version}.gif", Path(tmp) / f"{role}_v{version}.mp4"
        gif.write_bytes(encode_gif(grid, fps, scale=4))
        big = grid.repeat(4, axis=1).repeat(4, axis=2)  # nearest-neighbour x4 so players show it
        mp4.write_bytes(encode_mp4(big, fps))
        mlflow.log_artifact(str(gif), "samples")
        mlflow.log_artifact(str(mp4), "samples")
