"""What Lightning runs: the module that wires network and noise process, EMA weights, and the data stream.

Every random draw of a training step (sigma, noise, caption dropout) comes from a generator seeded by the
run seed and the micro-batch's global index, and the stream's position is a function of that index too.
So a run resumed from a checkpoint at step N replays exactly what an uninterrupted run does after step N.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

import lightning as L
import numpy as np
import torch
from lightning.pytorch.strategies import FSDPStrategy
from torch import nn
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from reelforge.config import TrainParams
from reelforge.model.backbone import TextToVideoModel
from reelforge.model.diffusion import RectifiedFlow


def step_generator(seed: int, index: int, device: torch.device) -> torch.Generator:
    """A generator for one micro-batch: independent streams per (run seed, global micro-batch index)."""
    state = int(np.random.SeedSequence([seed, index]).generate_state(1, np.uint64)[0] >> 1)
    return torch.Generator(device=device).manual_seed(state)


class Samples(Protocol):
    """What the data streams index by a batch of sample indices, all of one bucket (one shape), read on
    demand: `StreamedPixels`, `StreamedLatents`, `TokenizedCaptions`."""

    def __len__(self) -> int: ...
    def __getitem__(self, idx: torch.Tensor) -> torch.Tensor: ...


class Bucketed(Samples, Protocol):
    buckets: np.ndarray  # (N,) each sample's bucket, an index into `shapes`
    shapes: list[torch.Size]  # (T, C, H, W) of each bucket


class BatchStream(IterableDataset):
    """Endless micro-batches, each of one bucket.

    Bucket b's samples, permuted afresh each epoch e (seeded by the run seed, e and b), make an endless
    sequence; its c-th batch is positions [c * B, (c + 1) * B) of it. Which bucket the global micro-batch g
    draws from is laid out in blocks of M = sum over b of ceil(n_b / B) batches, bucket b taking ceil(n_b / B)
    places of each block, in an order seeded by the block: so every bucket is drawn in proportion to its
    size, and g's batch is the (j * ceil(n_b / B) + its place among b's in block j)-th of its bucket. With one
    bucket this is simply the endless permuted sequence cut into batches.

    Rank r of W takes global micro-batch g = k * W + r for its k-th batch; it starts at k = `start` (resume).
    In a DataLoader with n workers, worker w builds k = start + w, start + w + n, ...: the loader's in-order
    round robin hands them over as k = start, start + 1, ..., the same batches as with no workers."""

    def __init__(self, x: Bucketed, ids: Samples, batch: int, seed: int, rank: int, world: int, start: int):
        self.x, self.ids = x, ids  # N samples, (N, L)
        self.batch, self.seed, self.rank, self.world, self.start = batch, seed, rank, world, start
        self.members = [np.flatnonzero(x.buckets == b) for b in range(len(x.shapes))]
        self.per_block = np.array([-(-len(m) // batch) for m in self.members])  # batches of b per block
        self._perms: dict[tuple[int, int], np.ndarray] = {}  # (bucket, epoch) -> permutation, recent only
        self._blocks: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _perm(self, bucket: int, epoch: int) -> np.ndarray:
        """Bucket `bucket`'s samples in epoch `epoch`'s order (kept for the two latest epochs)."""
        if (bucket, epoch) not in self._perms:
            seed = [self.seed, epoch] + ([bucket] if bucket else [])
            members = self.members[bucket]
            self._perms[(bucket, epoch)] = members[np.random.default_rng(seed).permutation(len(members))]
            for key in [k for k in self._perms if k[0] == bucket and k[1] < epoch - 1]:
                del self._perms[key]
        return self._perms[(bucket, epoch)]

    def _block(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        """Block j's bucket at each place, and each place's rank among its bucket's places in the block."""
        if j not in self._blocks:
            order = np.repeat(np.arange(len(self.members)), self.per_block)
            if len(self.members) > 1:
                rng = np.random.default_rng(np.random.SeedSequence([self.seed, j], spawn_key=(1,)))
                order = order[rng.permutation(len(order))]
            rank = np.empty(len(order), np.int64)
            for b in range(len(self.members)):
                rank[order == b] = np.arange(self.per_block[b])
            self._blocks = {k: v for k, v in self._blocks.items() if k >= j - 1}
            self._blocks[j] = order, rank
        return self._blocks[j]

    def indices(self, g: int) -> np.ndarray:
        j, place = divmod(g, int(self.per_block.sum()))
        order, rank = self._block(j)
        b = int(order[place])
        c = j * int(self.per_block[b]) + int(rank[place])  # the c-th batch of bucket b
        n = len(self.members[b])
        pos = np.arange(c * self.batch, (c + 1) * self.batch)
        out = np.empty(self.batch, dtype=np.int64)
        for epoch in np.unique(pos // n):
            sel = pos // n == epoch
            out[sel] = self._perm(b, int(epoch))[pos[sel] % n]
        return out

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
        worker = get_worker_info()
        k, step = (self.start, 1) if worker is None else (self.start + worker.id, worker.num_workers)
        while True:
            g = k * self.world + self.rank
            idx = torch.from_numpy(self.indices(g))
            yield self.x[idx], self.ids[idx], g
            k += step


def bucket_batches(buckets: np.ndarray, batch: int) -> list[list[int]]:
    """Every sample once, in batches of at most `batch` of one bucket each, bucket by bucket in order."""
    out = []
    for b in np.unique(buckets):
        members = np.flatnonzero(buckets == b).tolist()
        out += [members[i : i + batch] for i in range(0, len(members), batch)]
    return out


class Batches(Dataset):
    """Map-style access to `x` and `ids` by a list of indices, for a batch sampler: validation batches."""

    def __init__(self, x: Samples, ids: Samples):
        self.x, self.ids = x, ids

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        i = torch.tensor(idx)
        return self.x[i], self.ids[i]


class EMA(nn.Module):
    """Exponential moving average of the trainable weights, kept as buffers so checkpoints carry it.

    decay_t = min(decay, (1 + t) / (10 + t)) warms up so early averages are not dominated by the init."""

    def __init__(self, model: nn.Module, decay: float):
        super().__init__()
        self.decay = decay
        self.names = [n for n, p in model.named_parameters() if p.requires_grad]
        for i, (_, p) in enumerate(self._params(model)):
            self.register_buffer(f"w{i}", p.detach().clone())

    def _params(self, model: nn.Module) -> list[tuple[str, nn.Parameter]]:
        params = dict(model.named_parameters())
        return [(n, params[n]) for n in self.names]

    def shadows(self) -> list[torch.Tensor]:
        return [getattr(self, f"w{i}") for i in range(len(self.names))]

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        params = [p.detach() for _, p in self._params(model)]
        torch._foreach_lerp_(self.shadows(), params, 1 - decay)

    @contextmanager
    @torch.no_grad()
    def applied(self, model: nn.Module) -> Iterator[None]:
        """The model with EMA weights inside the block, its training weights restored after."""
        params = [p for _, p in self._params(model)]
        backup = [p.detach().clone() for p in params]
        torch._foreach_copy_(params, self.shadows())
        try:
            yield
        finally:
            torch._foreach_copy_(params, backup)


def lr_lambda(cfg: TrainParams) -> Callable[[int], float]:
    """Linear warm-up over warmup_steps, then cosine decay to min_lr_ratio at `steps`."""

    def f(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = min((step - cfg.warmup_steps) / max(cfg.steps - cfg.warmup_steps, 1), 1.0)
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return f


class TextToVideoModule(L.LightningModule):
    """Wires the network and the noise process; holds no model or schedule logic of its own."""

    def __init__(
        self, model: TextToVideoModel, flow: RectifiedFlow, cfg: TrainParams, null_ids: torch.Tensor
    ):
        super().__init__()
        self.model, self.flow, self.cfg = model, flow, cfg
        self.register_buffer("null_ids", null_ids.view(1, -1), persistent=False)  # (1, L) the empty prompt
        self.ema = EMA(model, cfg.ema_decay) if cfg.ema_decay > 0 else None

    def configure_model(self) -> None:
        if self.cfg.gradient_checkpointing:
            self.model.backbone.enable_gradient_checkpointing()
        if self.cfg.compile:
            self.model.backbone.compile()  # in place: state_dict keys stay the same

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor, int], batch_idx: int) -> torch.Tensor:
        x0, ids, index = batch  # (B, T, C, H, W), (B, L), global micro-batch index
        gen = step_generator(self.cfg.seed, int(index), x0.device)
        drop = torch.rand(len(ids), device=ids.device, generator=gen) < self.cfg.caption_dropout
        ids = torch.where(
            drop[:, None], self.null_ids, ids
        )  # classifier-free guidance: learn the null prompt
        loss = self.flow.training_loss(self.model, x0, ids, gen)
        self.log("loss", loss, prog_bar=True)
        self.log("lr", self.optimizers().param_groups[0]["lr"])
        return loss

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Gradients are accumulated (and all-reduced across ranks) here, and not clipped yet.
        if not self._fsdp:  # FSDP ranks hold shards: the global norm is logged where it is clipped
            grads = [p.grad for p in self.model.parameters() if p.grad is not None]
            self.log("grad_norm", torch.nn.utils.get_total_norm(grads))

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        if not self._fsdp:
            self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)
            return
        # Lightning's FSDP precision plugin refuses norm clipping; the FSDP root module clips over every
        # shard and returns the global (pre-clip) norm.
        norm = self.trainer.strategy.model.clip_grad_norm_(gradient_clip_val or math.inf)
        self.log("grad_norm", norm)

    @property
    def _fsdp(self) -> bool:
        return isinstance(self.trainer.strategy, FSDPStrategy)

    def optimizer_step(
        self,
        epoch: int,
        batch_idx: int,
        optimizer: torch.optim.Optimizer,
        optimizer_closure: Callable | None = None,
    ) -> None:
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        if self.ema is not None:  # before any callback sees the step (checkpoints must hold this update)
            self.ema.update(self.model, self.trainer.global_step)

    @contextmanager
    def ema_weights(self) -> Iterator[None]:
        if self.ema is None:
            yield
        else:
            with self.ema.applied(self.model):
                yield

    def on_validation_epoch_start(self) -> None:
        self._ema_ctx = self.ema_weights()
        self._ema_ctx.__enter__()

    def on_validation_epoch_end(self) -> None:
        self._ema_ctx.__exit__(None, None, None)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x0, ids = batch
        gen = step_generator(self.cfg.seed + 1, batch_idx, x0.device)  # the same draws at every validation
        self.log("val_loss", self.flow.training_loss(self.model, x0, ids, gen), sync_dist=True)

    def configure_optimizers(self) -> dict:
        params = [p for p in self.model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(self.cfg))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
