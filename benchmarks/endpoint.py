"""Serving throughput: batch size 1 (the baseline) against batching, on a real local Ray Serve.

Registers a model of the demo's shape (`tiny-conv`, 16 frames of 32 x 32; random weights: the cost does not
depend on them) in a temporary MLflow store, deploys it with the `cpu` profile, and for each
`max_batch_size` measures, in the same run:

  sync     `--clients` concurrent clients calling POST /v1/generate, `--requests` each
  jobs     `--jobs` jobs queued at once with POST /v1/videos, polled until all succeeded

It reports videos per second, median latency and the mean batch size the replica ran (from /metrics), and
each throughput's ratio to batch size 1. Prints a table, writes JSON.

    python benchmarks/endpoint.py --batch-sizes 1 4 --out reports/bench_serving.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
import mlflow
import torch
from mlflow import MlflowClient

from reelforge.config import Params, RegistryParams, SchedulerParams, ServeConfig
from reelforge.model.autoencoder import Autoencoder
from reelforge.model.backbone import ModelConfig, TextToVideoModel
from reelforge.model.pipeline import TextToVideoPipeline
from reelforge.model.text import PromptTokenizer, train_tokenizer
from reelforge.registry.models import log_and_register
from reelforge.registry.tracking import setup
from serving.deploy import deploy, stop

PROMPT = "a red circle moves left over a black background"


def _register(root: Path, cfg: ServeConfig, steps: int) -> None:
    setup(RegistryParams())
    torch.manual_seed(0)
    tok = PromptTokenizer(train_tokenizer([PROMPT]), 16)
    model = TextToVideoModel(ModelConfig("tiny-conv", 16, 32, 32, 3, tok.tok.get_vocab_size(), 16))
    TextToVideoPipeline(
        model.eval(), tok, Autoencoder(None), SchedulerParams(), 8.0, 16, steps, 3.0
    ).save_pretrained(root / "t2v")
    with mlflow.start_run():
        version = log_and_register(root / "t2v", cfg.registry.model_name)
    MlflowClient().set_registered_model_alias(cfg.registry.model_name, cfg.registry.alias, version)


def _batches(url: str) -> tuple[float, float]:
    """(videos, model calls) so far, from the replica's reelforge_batch_size histogram."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    total = sum(float(v) for v in re.findall(r"^reelforge_batch_size_sum\{[^}]*\} (\S+)$", text, re.M))
    count = sum(float(v) for v in re.findall(r"^reelforge_batch_size_count\{[^}]*\} (\S+)$", text, re.M))
    return total, count


def _mean_batch(before: tuple[float, float], after: tuple[float, float]) -> float:
    calls = after[1] - before[1]
    return (after[0] - before[0]) / calls if calls else 0.0


def _sync(url: str, clients: int, requests: int) -> dict:
    latencies: list[float] = []

    def client(c: int) -> None:
        for i in range(requests):
            t0 = time.perf_counter()
            r = httpx.post(f"{url}/v1/generate", json={"prompt": PROMPT, "seed": c * 1000 + i}, timeout=600)
            r.raise_for_status()
            latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    wall = time.perf_counter() - t0
    return {"videos": len(latencies), "wall_s": wall, "videos_per_s": len(latencies) / wall,
            "median_latency_s": statistics.median(latencies)}  # fmt: skip


def _jobs(url: str, n: int) -> dict:
    t0 = time.perf_counter()
    urls = [httpx.post(f"{url}/v1/videos", json={"prompt": PROMPT, "seed": i}, timeout=60).json()["url"]
            for i in range(n)]  # fmt: skip
    done: dict[str, float] = {}
    for u in urls:  # in submission order, which is about the order they finish: few polls, little load
        while httpx.get(url + u, timeout=60).json()["status"] != "succeeded":
            time.sleep(0.1)
        done[u] = time.perf_counter() - t0
    wall = max(done.values())
    return {"videos": n, "wall_s": wall, "videos_per_s": n / wall,
            "median_latency_s": statistics.median(done.values())}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--requests", type=int, default=4, help="per client")
    ap.add_argument("--jobs", type=int, default=16)
    ap.add_argument("--steps", type=int, default=20, help="sampling steps (the demo's)")
    ap.add_argument("--port", type=int, default=8141)
    ap.add_argument("--ray-port", type=int, default=6395)
    ap.add_argument("--out", default="reports/bench_serving.json")
    args = ap.parse_args()
    out = Path(args.out).resolve()
    root = Path(tempfile.mkdtemp(prefix="bench_serving_"))
    os.chdir(root)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    params = Params().model_dump()
    params["serve"].update(
        port=args.port, ray_port=args.ray_port, rate_limit_per_minute=0, max_queued_jobs=1000
    )
    cfg = Params(**params).stage(ServeConfig)
    url = f"http://127.0.0.1:{args.port}"
    _register(root, cfg, args.steps)
    rows = []
    try:
        for size in args.batch_sizes:
            deploy(cfg, root, profile_overrides={"max_batch_size": size, "batch_wait_timeout_s": 0.05})
            _sync(url, 1, 1)  # warm-up
            b0 = _batches(url)
            sync = _sync(url, args.clients, args.requests)
            b1 = _batches(url)
            jobs = _jobs(url, args.jobs)
            sync["mean_batch"], jobs["mean_batch"] = _mean_batch(b0, b1), _mean_batch(b1, _batches(url))
            rows.append({"max_batch_size": size, "sync": sync, "jobs": jobs})
            stop(cfg, stop_ray=False)  # the next size starts from a fresh replica
    finally:
        stop(cfg)
    base = rows[0]
    print(f"\n{'max_batch_size':>14} {'sync videos/s':>14} {'x base':>7} {'sync p50 s':>11} {'batch':>6} "
          f"{'jobs videos/s':>14} {'x base':>7} {'jobs p50 s':>11} {'batch':>6}")  # fmt: skip
    for r in rows:
        r["sync"]["vs_base"] = r["sync"]["videos_per_s"] / base["sync"]["videos_per_s"]
        r["jobs"]["vs_base"] = r["jobs"]["videos_per_s"] / base["jobs"]["videos_per_s"]
        s, j = r["sync"], r["jobs"]
        print(f"{r['max_batch_size']:>14} {s['videos_per_s']:>14.2f} {s['vs_base']:>7.2f} "
              f"{s['median_latency_s']:>11.2f} {s['mean_batch']:>6.2f} {j['videos_per_s']:>14.2f} "
              f"{j['vs_base']:>7.2f} {j['median_latency_s']:>11.2f} {j['mean_batch']:>6.2f}")  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({"args": vars(args), "device": "cpu", "torch_threads": 1, "rows": rows}, indent=1)
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
