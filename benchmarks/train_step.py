"""Training step time: reelforge's Lightning step against a plain PyTorch loop doing the same work.

Same model (a size from MODEL_SIZES), batch, optimizer (AdamW + warm-up/cosine), gradient clipping, EMA and
data stream; all measured in the same run, in alternating rounds, after warm-up steps. Three loops:

- plain: the step written out by hand in PyTorch;
- lightning: TextToVideoModule under a bare Trainer (no logger, no callbacks);
- callbacks: the same Trainer with what a training run carries: the MLflow logger (SQLite, in a temp
  folder), StepMonitor, and ResumableCheckpoint writing last.ckpt every --ckpt-every steps.

Reports median step times, both ratios against plain (target <= 1.05 without callbacks), samples/s, tokens/s
and MFU against the matmul peak measured in the same run on the same device (and the data-sheet peak where
the device is in reelforge.train.monitor.PEAK_TFLOPS).

    python benchmarks/train_step.py          # CPU: tiny model, 16 x 3 x 32 x 32 pixels
    python benchmarks/train_step.py --accelerator gpu --size base --precision bf16-mixed \\
        --frames 16 --channels 16 --height 32 --width 32 --batch 2    # latent 16 x 16 x 32 x 32 (256^2 video)

At batch 8 that base configuration needs --grad-ckpt: without it the activations ran out of an H200's 139 GiB.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from reelforge.config import SchedulerParams, TrainParams
from reelforge.model.backbone import ModelConfig, TextToVideoModel
from reelforge.model.diffusion import RectifiedFlow
from reelforge.train.module import EMA, BatchStream, TextToVideoModule, lr_lambda, step_generator
from reelforge.train.monitor import (
    ResumableCheckpoint,
    StepMonitor,
    backbone_flops,
    enable_tf32,
    measured_matmul_peak,
    table_peak,
)

VOCAB, TEXT_LEN = 64, 16


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _setup(args, device):
    torch.manual_seed(0)
    cfg = TrainParams(
        model_size=args.size,
        steps=10_000,
        batch_size=args.batch,
        accelerator="gpu" if device.type == "cuda" else "cpu",
        precision=args.precision,
        gradient_checkpointing=args.grad_ckpt,
        ema_decay=0.999,
    )
    model_cfg = ModelConfig(args.size, args.frames, args.height, args.width, args.channels, VOCAB, TEXT_LEN)
    model = TextToVideoModel(model_cfg)
    x = torch.randn(max(64, args.batch), args.frames, args.channels, args.height, args.width)
    ids = torch.randint(4, VOCAB, (len(x), TEXT_LEN))
    return cfg, model, BatchStream(x, ids, args.batch, seed=0, rank=0, world=1, start=0)


def plain_loop(args, device, steps: int, loader: DataLoader | None = None) -> list[float]:
    """What the Lightning module does, written out by hand; batches from `loader` when given (else random
    tensors in memory)."""
    cfg, model, stream = _setup(args, device)
    model.to(device).train()
    if cfg.gradient_checkpointing:
        model.backbone.enable_gradient_checkpointing()
    flow = RectifiedFlow(SchedulerParams())
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg))
    ema = EMA(model, cfg.ema_decay).to(device)
    null = torch.zeros(1, TEXT_LEN, dtype=torch.long, device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16-mixed")
    times, batches = [], iter(DataLoader(stream, batch_size=None) if loader is None else loader)
    _sync(device)
    last = time.perf_counter()
    for step in range(steps):
        x0, ids, index = next(batches)
        x0, ids = x0.to(device), ids.to(device)
        gen = step_generator(cfg.seed, index, device)
        drop = torch.rand(len(ids), device=device, generator=gen) < cfg.caption_dropout
        ids = torch.where(drop[:, None], null, ids)
        with autocast:
            loss = flow.training_loss(model, x0, ids, gen)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        ema.update(model, step)
        loss.item()  # Lightning reads the loss back for logging too
        _sync(device)
        now = time.perf_counter()
        times.append(now - last)
        last = now
    return times


class StepTimes(L.Callback):
    def __init__(self, device):
        self.device, self.times, self.last = device, [], None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        _sync(self.device)
        now = time.perf_counter()
        if self.last is not None:
            self.times.append(now - self.last)
        self.last = now


def lightning_loop(args, device, steps: int, with_callbacks: bool = False) -> list[float]:
    cfg, model, stream = _setup(args, device)
    module = TextToVideoModule(
        model, RectifiedFlow(SchedulerParams()), cfg, torch.zeros(TEXT_LEN, dtype=torch.long)
    )
    timer = StepTimes(device)
    with tempfile.TemporaryDirectory() as tmp:
        logger, extra = False, []
        if with_callbacks:  # as reelforge.train.trainer.callbacks builds them, less the sample GIFs
            from lightning.pytorch.loggers import MLFlowLogger

            logger = MLFlowLogger("bench", tracking_uri=f"sqlite:///{tmp}/mlflow.db", run_name="bench")
            shape = (args.batch, args.frames, args.channels, args.height, args.width)
            patch = model.backbone.config.patch_size
            tokens = args.frames * (args.height // patch) * (args.width // patch)
            flops = backbone_flops(model.backbone, shape, TEXT_LEN) // args.batch
            extra = [StepMonitor(flops, tokens, print_every=10**9), ResumableCheckpoint(tmp, args.ckpt_every)]
        trainer = L.Trainer(
            max_steps=steps + 1,
            accelerator=cfg.accelerator,
            devices=1,
            precision=cfg.precision,
            gradient_clip_val=cfg.grad_clip,
            logger=logger,
            log_every_n_steps=cfg.log_every_n_steps,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            limit_val_batches=0,
            callbacks=[*extra, timer],
        )
        trainer.fit(module, DataLoader(stream, batch_size=None))
    return timer.times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--accelerator", choices=["cpu", "gpu"], default="cpu")
    ap.add_argument("--size", default="tiny")
    ap.add_argument("--precision", choices=["32", "bf16-mixed"], default="32")
    ap.add_argument("--grad-ckpt", action="store_true")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--channels", type=int, default=3)
    ap.add_argument("--height", type=int, default=32)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=30, help="Timed steps per round.")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--ckpt-every", type=int, default=10, help="last.ckpt interval in the callbacks loop.")
    ap.add_argument("--out", type=Path, default=Path("reports/bench_train_step.json"))
    args = ap.parse_args()
    device = torch.device("cuda" if args.accelerator == "gpu" else "cpu")
    if device.type == "cuda" and args.precision == "32":
        enable_tf32()  # as training does: fp32 on CUDA is TF32 math

    times = {"plain": [], "lightning": [], "callbacks": []}
    n = args.warmup + args.steps
    for _ in range(args.rounds):  # alternate, so drift on a shared machine hits all alike
        times["plain"] += plain_loop(args, device, n)[args.warmup :]
        times["lightning"] += lightning_loop(args, device, n)[args.warmup :]
        times["callbacks"] += lightning_loop(args, device, n, with_callbacks=True)[args.warmup :]
    median = {k: statistics.median(v) for k, v in times.items()}

    _, model, _ = _setup(args, device)
    shape = (args.batch, args.frames, args.channels, args.height, args.width)
    flops = backbone_flops(model.backbone, shape, TEXT_LEN)
    dtype = torch.bfloat16 if args.precision == "bf16-mixed" else torch.float32
    peak = measured_matmul_peak(device, dtype, n=4096 if device.type == "cuda" else 1024)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    sheet = (table_peak(name, args.precision) or (None,))[0]
    patch = model.backbone.config.patch_size
    tokens = args.frames * (args.height // patch) * (args.width // patch) * args.batch

    rows = {}
    for k, t in median.items():
        rows[k] = {
            "median_step_s": t,
            "mean_step_s": statistics.fmean(times[k]),  # carries the every-N checkpoint writes
            "samples_per_s": args.batch / t,
            "tokens_per_s": tokens / t,
            "mfu_vs_measured_peak": flops / t / peak,
            "mfu_vs_datasheet_peak": flops / t / sheet if sheet else None,
        }
    ratio = median["lightning"] / median["plain"]
    ratio_cb = median["callbacks"] / median["plain"]
    mean_ratio_cb = statistics.fmean(times["callbacks"]) / statistics.fmean(times["plain"])
    n_params = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"device {name}, model {args.size} ({n_params:.2f}M params), batch {shape}, "
          f"precision {args.precision}, {len(times['plain'])} steps each")  # fmt: skip
    print(f"backbone FLOPs/step {flops / 1e9:.2f} G; measured {dtype} matmul peak {peak / 1e12:.2f} TFLOP/s")
    header = ("loop", "median s", "mean s", "samples/s", "tokens/s", "MFU(meas)", "MFU(sheet)")
    print(f"{header[0]:<10}" + "".join(f" {h:>10}" for h in header[1:]))
    for k, r in rows.items():
        sheet_mfu = f"{r['mfu_vs_datasheet_peak']:.1%}" if r["mfu_vs_datasheet_peak"] else "n/a"
        print(
            f"{k:<10} {r['median_step_s']:>10.4f} {r['mean_step_s']:>10.4f} {r['samples_per_s']:>10.1f} "
            f"{r['tokens_per_s']:>12.0f} "
            f"{r['mfu_vs_measured_peak']:>10.1%} {sheet_mfu:>10}"
        )
    print(f"lightning / plain median step time: {ratio:.3f}x (target <= 1.05)")
    print(
        f"callbacks / plain median step time: {ratio_cb:.3f}x (MLflow logger every "
        f"{TrainParams().log_every_n_steps} steps, StepMonitor, last.ckpt every {args.ckpt_every} steps); "
        f"mean {mean_ratio_cb:.3f}x"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "device": name,
        "flops_per_step": flops,
        "measured_peak_flops": peak,
        "datasheet_peak_flops": sheet,
        "results": rows,
        "lightning_over_plain": ratio,
        "callbacks_over_plain": ratio_cb,
        "callbacks_over_plain_mean": mean_ratio_cb,
        "step_times": times,
    }
    args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
