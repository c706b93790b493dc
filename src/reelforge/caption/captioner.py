"""A small video-text model trained on the clips that came with captions.

One network, two jobs: a caption decoder (video -> text, for clips without captions) and a contrastive
video/text embedding (CLIP-style) that evaluation uses as its *reference* encoder when no standard I3D/CLIP
weights are given. Its identity is the sha256 of its weights, logged with every number it produces.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from reelforge.files import file_sha256
from reelforge.model.pixels import to_model
from reelforge.model.text import BOS_ID, EOS_ID, PAD_ID, load_tokenizer

# The caption stage's output directory: the caption table and the frozen captioner.
CAPTIONS = "captions.parquet"
CAPTIONER_DIR = "captioner"


@dataclass(frozen=True)
class CaptionerConfig:
    vocab_size: int
    dim: int
    max_tokens: int


def frames_to_tensor(frames: np.ndarray) -> torch.Tensor:
    """(B, T, H, W, 3) uint8 -> (B, 3, T, H, W) float in [-1, 1], the layout Conv3d wants."""
    return to_model(frames).transpose(1, 2)  # (B, T, 3, H, W) -> (B, 3, T, H, W)


class VideoEncoder(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv3d(3, 32, 3, stride=(1, 2, 2), padding=1),
            nn.GELU(),  # (B, 32, T, H/2, W/2)
            nn.Conv3d(32, 64, 3, stride=2, padding=1),
            nn.GELU(),  # (B, 64, T/2, H/4, W/4)
            nn.Conv3d(64, dim, 3, stride=2, padding=1),
            nn.GELU(),  # (B, dim, T/4, H/8, W/8)
        )

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.net(video).mean(dim=(2, 3, 4))  # (B, dim)


class Captioner(nn.Module):
    def __init__(self, cfg: CaptionerConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.dim
        self.video = VideoEncoder(d)
        self.video_proj = nn.Linear(d, d)
        self.token_embed = nn.Embedding(cfg.vocab_size, d, padding_idx=PAD_ID)
        self.text_proj = nn.Linear(d, d)
        self.init_hidden = nn.Linear(d, d)
        # The video is an input at every step, not only the initial state: a GRU started from the video
        # forgets it by a caption's 8th word (the background), and read backgrounds right 0.21 of the time.
        self.decoder = nn.GRU(2 * d, d, batch_first=True)
        self.head = nn.Linear(d, cfg.vocab_size)
        self.logit_scale = nn.Parameter(torch.tensor(np.log(1 / 0.07), dtype=torch.float32))

    # -- embeddings (the reference encoder) --
    def video_features(self, video: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) -> (B, dim) pooled features (the FVD_ref feature space)."""
        return self.video(video)

    def video_embedding(self, video: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.video_proj(self.video(video)), dim=-1)

    def text_embedding(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, L) -> unit-norm (B, dim): mean of non-PAD token embeddings, projected."""
        mask = (ids != PAD_ID).unsqueeze(-1).float()  # (B, L, 1)
        pooled = (self.token_embed(ids) * mask).sum(1) / mask.sum(1).clamp(min=1)
        return F.normalize(self.text_proj(pooled), dim=-1)

    # -- losses --
    def loss(self, video: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """ids: (B, L) with BOS ... EOS PAD...; captioning cross-entropy + symmetric InfoNCE."""
        feats = self.video(video)
        logits = self._decode_logits(feats, ids[:, :-1])  # (B, L-1, V)
        ce = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), ignore_index=PAD_ID
        )
        v = F.normalize(self.video_proj(feats), dim=-1)
        t = self.text_embedding(ids)
        sim = self.logit_scale.exp().clamp(max=100) * v @ t.T  # (B, B)
        labels = torch.arange(len(sim))
        nce = (F.cross_entropy(sim, labels) + F.cross_entropy(sim.T, labels)) / 2
        return ce + nce, {"caption_ce": ce.item(), "contrastive": nce.item()}

    def _decoder_inputs(self, feats: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """(B, L, 2 dim): each token's embedding beside the clip's video features."""
        return torch.cat([self.token_embed(ids), feats[:, None].expand(-1, ids.shape[1], -1)], dim=-1)

    def _decode_logits(self, feats: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        h0 = torch.tanh(self.init_hidden(feats)).unsqueeze(0)  # (1, B, dim)
        out, _ = self.decoder(self._decoder_inputs(feats, inputs), h0)  # (B, L, dim)
        return self.head(out)

    @torch.no_grad()
    def generate(self, video: torch.Tensor) -> list[list[int]]:
        """Greedy decoding; returns token ids per clip without BOS/EOS."""
        feats = self.video(video)
        h = torch.tanh(self.init_hidden(feats)).unsqueeze(0)
        tok = torch.full((len(feats), 1), BOS_ID, dtype=torch.long)
        out = [[] for _ in range(len(feats))]
        done = torch.zeros(len(feats), dtype=torch.bool)
        for _ in range(self.cfg.max_tokens - 1):
            step, h = self.decoder(self._decoder_inputs(feats, tok), h)
            tok = self.head(step[:, -1]).argmax(-1, keepdim=True)  # (B, 1)
            for i in range(len(feats)):
                if not done[i] and tok[i, 0] != EOS_ID:
                    out[i].append(int(tok[i, 0]))
            done |= tok[:, 0] == EOS_ID
            if done.all():
                break
        return out

    # -- persistence --
    def save(self, out_dir: Path) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.json").write_text(json.dumps(asdict(self.cfg), indent=2))
        torch.save(self.state_dict(), out_dir / "model.pt")


@dataclass
class ReferenceEncoder:
    """A frozen captioner loaded from disk, with its identity."""

    model: Captioner
    tokenizer: object
    sha256: str

    @property
    def name(self) -> str:
        return f"reelforge-ref-{self.sha256[:12]}"


def weights_sha256(model_dir: str | Path) -> str:
    return file_sha256(Path(model_dir) / "model.pt")


def load_captioner(model_dir: str | Path) -> ReferenceEncoder:
    model_dir = Path(model_dir)
    model = Captioner(CaptionerConfig(**json.loads((model_dir / "config.json").read_text())))
    model.load_state_dict(torch.load(model_dir / "model.pt", map_location="cpu", weights_only=True))
    model.eval().requires_grad_(False)
    return ReferenceEncoder(model, load_tokenizer(model_dir / "tokenizer.json"), weights_sha256(model_dir))


def read_captions(captions_dir: str | Path) -> pd.DataFrame:
    """The caption stage's table: clip_id, caption, caption_source (given | model), captioner."""
    return pd.read_parquet(Path(captions_dir) / CAPTIONS)
