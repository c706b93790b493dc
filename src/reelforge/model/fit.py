"""Do the clips fit the model? Checked against a pretrained backbone's and autoencoder's own config.json
files when training starts, before any data is read (the size table is checked when params load)."""

from __future__ import annotations

import json
from pathlib import Path

from reelforge.config import TrainConfig
from reelforge.model.autoencoder import compression
from reelforge.model.sizes import MODEL_SIZES, spatial_multiple


def fit_problems(cfg: TrainConfig) -> list[str]:
    """Why clips of the clip.buckets shapes cannot train this backbone in this autoencoder's space."""
    train = cfg.train
    try:
        if train.pretrained_path:
            config = json.loads((Path(train.pretrained_path) / "config.json").read_text())
            patch = spatial_multiple(config["patch_size"], config.get("channels", ()))
        else:
            patch = MODEL_SIZES[train.model_size].spatial_multiple
        space = compression(train.vae_path)
        return [
            p
            for b in cfg.clip.buckets
            for p in space.problems(b.name, b.num_frames, b.width, b.height, patch)
        ]
    except (OSError, KeyError, ValueError) as exc:
        return [f"train.pretrained_path / train.vae_path: cannot read the model config: {exc}"]
