"""Standard feature extractors loaded from local files (no hub downloads): I3D for FVD, CLIP for clip score.

I3D comes in two forms, both with the standard preprocessing (frames resized bilinear to 224x224, values in
[-1, 1], at least 10 frames, 16 standard) and 400-d Kinetics logits as features:
- the converted Kinetics-400 I3D (`make i3d`, a `.safetensors` file of reelforge.evaluate.i3d weights). Only
  the file whose sha256 is `i3d.PINNED_SHA256` gives the metric `fvd`;
- any other I3D: another safetensors file, or a TorchScript model called as the common PyTorch FVD code calls
  it (`detector(x, rescale=False, resize=False, return_features=True)`). Its distance is `fvd_custom`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from reelforge.evaluate.i3d import PINNED_SHA256, load_i3d
from reelforge.files import file_sha256

I3D_MIN_FRAMES = 10
I3D_SIZE = 224
DEFAULT_I3D_PATH = "models/i3d/i3d_k400.safetensors"  # where `make i3d` writes the converted weights


class I3DFeatures:
    """uint8 videos (B, T, H, W, 3) -> I3D Kinetics-400 logits (B, 400), float64. `metric` is `fvd` for the
    pinned conversion of the published weights and `fvd_custom` for any other file."""

    def __init__(self, path: str | Path, batch_size: int = 8):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"I3D file {path} not found (evaluate.i3d_path / REELFORGE_I3D_PATH; `make i3d` writes "
                f"{DEFAULT_I3D_PATH})"
            )
        self.sha256 = file_sha256(path)
        self.torchscript = path.suffix != ".safetensors"
        self.model = (
            torch.jit.load(str(path), map_location="cpu").eval() if self.torchscript else load_i3d(path)
        )
        self.metric = "fvd" if self.sha256 == PINNED_SHA256 else "fvd_custom"
        kind = "torchscript" if self.torchscript else ("k400" if self.metric == "fvd" else "custom")
        self.name = f"i3d-{kind}-{self.sha256[:12]}"
        self.batch_size = batch_size

    @staticmethod
    def preprocess(videos: np.ndarray) -> torch.Tensor:
        """(B, T, H, W, 3) uint8 -> (B, 3, T, 224, 224) float in [-1, 1], bilinear resize per frame."""
        b, t, h, w, _ = videos.shape
        if t < I3D_MIN_FRAMES:
            raise ValueError(
                f"I3D needs at least {I3D_MIN_FRAMES} frames per clip, got {t}; "
                "give every clip.buckets entry num_frames >= 10 (16 is the standard FVD protocol)"
            )
        x = torch.from_numpy(videos).float().div(127.5).sub(1.0)  # (B, T, H, W, 3)
        x = x.permute(0, 1, 4, 2, 3).reshape(b * t, 3, h, w)
        x = F.interpolate(x, size=(I3D_SIZE, I3D_SIZE), mode="bilinear", align_corners=False)
        return x.reshape(b, t, 3, I3D_SIZE, I3D_SIZE).permute(0, 2, 1, 3, 4)  # (B, 3, T, 224, 224)

    @torch.no_grad()
    def __call__(self, videos: np.ndarray) -> torch.Tensor:
        out = []
        for i in range(0, len(videos), self.batch_size):
            x = self.preprocess(videos[i : i + self.batch_size])
            if self.torchscript:
                out.append(self.model(x, rescale=False, resize=False, return_features=True).double())
            else:
                out.append(self.model(x).double())
        return torch.cat(out)


class _TensorFeatures(torch.nn.Module):
    """torchmetrics 1.9's CLIPScore expects `get_*_features` to return tensors; transformers 5 returns model
    outputs whose `pooler_output` holds the projected embedding. This adapter hands over that tensor."""

    def __init__(self, clip: torch.nn.Module):
        super().__init__()
        self.clip, self.config = clip, clip.config

    @staticmethod
    def _tensor(out: object) -> torch.Tensor:
        return out if isinstance(out, torch.Tensor) else out.pooler_output

    def get_image_features(self, *args: object, **kwargs: object) -> torch.Tensor:
        return self._tensor(self.clip.get_image_features(*args, **kwargs))

    def get_text_features(self, *args: object, **kwargs: object) -> torch.Tensor:
        return self._tensor(self.clip.get_text_features(*args, **kwargs))


class CLIPScorer:
    """Standard CLIP-score of videos against prompts with a CLIP model from a local Hugging Face directory:
    torchmetrics `CLIPScore` (100 * max(cos, 0)) over every frame, averaged per video."""

    def __init__(self, path: str | Path):
        from torchmetrics.multimodal.clip_score import CLIPScore
        from transformers import CLIPModel, CLIPProcessor

        path = Path(path)
        weights = [p for p in (path / "model.safetensors", path / "pytorch_model.bin") if p.is_file()]
        if not weights:
            raise FileNotFoundError(
                f"no CLIP weights (model.safetensors) in {path} (evaluate.clip_path / "
                "REELFORGE_CLIP_PATH); save one with CLIPModel.save_pretrained"
            )
        model = CLIPModel.from_pretrained(path, local_files_only=True).eval()
        processor = CLIPProcessor.from_pretrained(path, local_files_only=True)
        self.metric = CLIPScore(model_name_or_path=lambda: (_TensorFeatures(model), processor))
        self.sha256 = file_sha256(weights[0])
        self.name = f"clip-{path.name}-{self.sha256[:12]}"

    @torch.no_grad()
    def __call__(self, videos: np.ndarray, prompts: list[str]) -> torch.Tensor:
        """(N, T, H, W, 3) uint8 and N prompts -> (N,) scores, each the mean over the video's frames."""
        scores = []
        for video, prompt in zip(videos, prompts, strict=True):
            frames = torch.from_numpy(video).permute(0, 3, 1, 2)  # (T, 3, H, W)
            self.metric.update(list(frames), [prompt] * len(frames))
            scores.append(self.metric.compute().double())
            self.metric.reset()
        return torch.stack(scores)
