"""Training callbacks: throughput / MFU / memory per step, sample GIFs, resumable checkpoints, progress lines.

MFU = model FLOPs per optimizer step / step time / peak FLOP/s of all devices. Model FLOPs are counted by
torch's FlopCounterMode on one forward+backward of the backbone (on the meta device: no compute), so they
are exact for the shapes trained. The peak comes from PEAK_TFLOPS by device name; on a device the table
does not know (a CPU) it is a measured matmul peak, and the logged `mfu.peak_source` says which.
"""

from __future__ import annotations

import os
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import lightning as L
import mlflow
import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from reelforge.data.video import encode_gif

# Dense tensor-core peaks (TFLOP/s) from the vendor data sheets, by a substring of the device name.
# "tf32" is the peak of fp32 training: train.precision "32" on CUDA runs its matmuls in TF32
# (`enable_tf32`), so MFU is measured against the peak of the math that actually runs.
PEAK_TFLOPS: dict[str, dict[str, float]] = {
    "H200": {"bf16": 989.0, "tf32": 494.7},
    "H100 PCIe": {"bf16": 756.0, "tf32": 378.0},
    "H100": {"bf16": 989.0, "tf32": 494.7},  # SXM
    "A100": {"bf16": 312.0, "tf32": 156.0},
    "L40S": {"bf16": 362.0, "tf32": 183.0},
    "L4": {"bf16": 121.0, "tf32": 60.0},
}
# Lightning's precision names (what `trainer.precision` reports) -> the math the tensor cores run.
MATH = {"32": "tf32", "32-true": "tf32", "bf16-mixed": "bf16", "bf16-true": "bf16"}


def enable_tf32() -> None:
    """fp32 matmuls and convolutions on CUDA in TF32 (10-bit mantissa inputs, fp32 accumulation)."""
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


def table_peak(device_name: str, precision: str) -> tuple[float, str] | None:
    """(peak FLOP/s, its source) from the data-sheet table for a CUDA device name, or None if unknown."""
    math = MATH.get(precision)
    for key, peaks in PEAK_TFLOPS.items():
        if key in device_name and math in peaks:
            return peaks[math] * 1e12, f"table:{key} {math}"
    return None


def device_peak(device: torch.device, precision: str) -> tuple[float, str]:
    """(peak FLOP/s of one device, where the figure comes from): the table on a known GPU, else measured."""
    if device.type == "cuda" and (peak := table_peak(torch.cuda.get_device_name(device), precision)):
        return peak
    dtype = torch.bfloat16 if MATH.get(precision) == "bf16" else torch.float32
    return measured_matmul_peak(device, dtype), f"measured {dtype} matmul on {device.type}"


def measured_matmul_peak(device: torch.device, dtype: torch.dtype, n: int = 1024, repeats: int = 5) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    times = []
    for _ in range(repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / min(times[1:])


def backbone_flops(backbone: torch.nn.Module, shape: tuple[int, ...], text_len: int) -> int:
    """FLOPs of one forward+backward of `backbone` on a batch of `shape` (B, T, C, H, W)."""
    with torch.device("meta"):
        meta = type(backbone).from_config(backbone.config)
    b, text_dim = shape[0], backbone.config.text_embed_dim
    x = torch.empty(shape, device="meta")
    with FlopCounterMode(display=False) as counter:
        out = meta(x, torch.empty(b, text_len, text_dim, device="meta"), torch.ones(b, device="meta"))[0]
        out.sum().backward()
    return counter.get_total_flops()


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB -> MiB, whole process


class StepMonitor(L.Callback):
    """Per optimizer step: samples/s, tokens/s, MFU, peak memory, and `data_wait_frac`, the share of the
    step's wall time spent between micro-batches (waiting for the loader, plus Lightning's own work: a
    loader that keeps up leaves only the latter); and a plain progress line every N steps (readable through
    DVC and Prefect logs, where a redrawn bar is not)."""

    def __init__(self, flops_per_sample: int, tokens_per_sample: int, print_every: int):
        self.flops_per_sample, self.tokens_per_sample = flops_per_sample, tokens_per_sample
        self.print_every = print_every
        self._last: tuple[int, float] | None = None
        self._batch_end: float | None = None
        self._wait = 0.0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        peak, source = device_peak(pl_module.device, trainer.precision)
        self.peak_total = peak * trainer.world_size
        if trainer.is_global_zero and trainer.logger is not None:
            # Tags, not params: a resumed run measures the peak again, and MLflow params are immutable.
            tags = {
                "mfu.peak_tflops_per_device": round(peak / 1e12, 2),
                "mfu.peak_source": source,
                "mfu.flops_per_sample": self.flops_per_sample,
                "mfu.flops_counted": "backbone forward+backward (FlopCounterMode)",
                "tokens_per_sample": self.tokens_per_sample,
                "memory.source": "cuda max_memory_allocated"
                if pl_module.device.type == "cuda"
                else "process peak RSS",
            }
            for key, value in tags.items():
                trainer.logger.experiment.set_tag(trainer.logger.run_id, key, str(value))
        self._last = (trainer.global_step, time.perf_counter())
        self.t0 = time.perf_counter()

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: object, batch_idx: int
    ) -> None:
        if self._batch_end is not None:  # the batch was fetched between the last end and now
            self._wait += time.perf_counter() - self._batch_end

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: object, batch: object, batch_idx: int
    ) -> None:
        step, now = trainer.global_step, time.perf_counter()
        self._batch_end = now
        last_step, last_t = self._last
        if step == last_step:  # a micro-batch inside gradient accumulation
            return
        samples = (step - last_step) * pl_module.cfg.batch_size
        dt, wait = now - last_t, self._wait
        self._last, self._wait = (step, now), 0.0
        pl_module.log_dict(
            {
                "samples_per_s": samples / dt,
                "tokens_per_s": samples * self.tokens_per_sample / dt,
                "mfu": samples * self.flops_per_sample / dt / self.peak_total,
                "peak_memory_mb": peak_memory_mb(pl_module.device),
                "data_wait_frac": wait / dt,
            }
        )
        if trainer.is_global_zero and (step % self.print_every == 0 or step == trainer.max_steps):
            m = trainer.callback_metrics
            print(
                f"step {step}/{trainer.max_steps} loss {float(m.get('loss', float('nan'))):.4f} "
                f"samples/s {samples / dt:.1f} data wait {wait / dt:.0%} elapsed {now - self.t0:.0f}s",
                flush=True,
            )


class EveryNSteps(L.Callback):
    """Calls `on_step(trainer, pl_module, step)` once per optimizer step that is a multiple of `every`
    (on_train_batch_end also fires for each accumulated micro-batch)."""

    def __init__(self, every: int):
        self.every, self._seen = every, -1

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._seen = trainer.global_step  # a resumed run has handled this step already

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: object, batch: object, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if step != self._seen:
            self._seen = step
            if step % self.every == 0:
                self.on_step(trainer, pl_module, step)

    def on_step(self, trainer: L.Trainer, pl_module: L.LightningModule, step: int) -> None:
        raise NotImplementedError


class SampleGifs(EveryNSteps):
    """Every N steps, rank 0 samples the fixed prompts with the EMA weights and fixed seeds, and logs GIFs."""

    def __init__(
        self, every: int, prompts: list[str], sample_fn: Callable[[list[str]], np.ndarray], fps: float
    ):
        super().__init__(every)
        self.prompts, self.sample_fn, self.fps = prompts, sample_fn, fps

    def on_step(self, trainer: L.Trainer, pl_module: L.LightningModule, step: int) -> None:
        if not trainer.is_global_zero or not self.prompts:
            return
        pl_module.model.eval()
        # The training precision's context: under FSDP bf16-mixed the weights are bf16 and the inputs are not.
        with pl_module.ema_weights(), trainer.precision_plugin.forward_context():
            videos = self.sample_fn(self.prompts)  # (B, T, H, W, 3) uint8
        pl_module.model.train()
        run_id = trainer.logger.run_id
        with tempfile.TemporaryDirectory() as tmp:
            for i, (prompt, video) in enumerate(zip(self.prompts, videos, strict=True)):
                name = f"{i:02d}_" + "_".join(prompt.split())[:60] + ".gif"
                (Path(tmp) / name).write_bytes(encode_gif(video, self.fps))
            mlflow.MlflowClient().log_artifacts(run_id, tmp, f"samples/step_{step:07d}")


class ResumableCheckpoint(EveryNSteps):
    """`last.ckpt` every N optimizer steps and at the end, replaced atomically (a kill leaves the previous
    one intact). Lives in a folder DVC does not manage, so `dvc repro` never deletes it."""

    def __init__(self, ckpt_dir: Path, every: int):
        super().__init__(every)
        self.path = Path(ckpt_dir) / "last.ckpt"
        self._saved = -1

    def _save(self, trainer: L.Trainer) -> None:
        step = trainer.global_step
        if step == self._saved:
            return
        tmp = self.path.with_name("last.ckpt.partial")
        trainer.save_checkpoint(tmp)  # writes on rank 0 (all ranks take part under FSDP)
        if trainer.is_global_zero:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            print(f"checkpoint step {step} -> {self.path}", flush=True)
        trainer.strategy.barrier("checkpoint")
        self._saved = step

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._saved = trainer.global_step

    def on_step(self, trainer: L.Trainer, pl_module: L.LightningModule, step: int) -> None:
        self._save(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._save(trainer)
