"""Serving: the endpoint against the same generation in-process, jobs against sync, batching, and load.

Registers a model of the demo's shape (`tiny-conv`, 16 frames of 32 x 32; random weights: the cost does not
depend on them) in a temporary MLflow store and deploys it on a real local Ray Serve with the `cpu` profile
(one replica, one torch thread). All in one run, on the same model and request shape:

  overhead    `--latency-requests` requests one after another: in this process (the registered version
              loaded with `load_pipeline`, one torch thread, generate + encode: the baseline), through
              POST /v1/generate, and as a job (POST /v1/videos, poll every 50 ms, GET its content);
              medians and their ratios to the in-process one
  batching    `--clients` concurrent clients on /v1/generate, `--requests` each, and `--jobs` jobs queued
              at once, for each `--batch-sizes` (the first is the baseline): videos per second, the mean
              batch the replica ran (from /metrics)
  load        for each `--load` concurrency, that many clients each sending `--load-requests` requests to
              /v1/generate at once: p50/p95/p99 latency of the 200s, and the share of 503s (Serve's
              max_ongoing_requests + max_queued_requests bound the backlog)

Prints tables, writes JSON.

    python benchmarks/serve.py --out reports/bench_serve.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import mlflow
import numpy as np
import torch
from mlflow import MlflowClient

from reelforge.config import Params, RegistryParams, SchedulerParams, ServeConfig
from reelforge.data.video import encode_mp4
from reelforge.model.autoencoder import Autoencoder
from reelforge.model.backbone import ModelConfig, TextToVideoModel
from reelforge.model.pipeline import TextToVideoPipeline
from reelforge.model.text import PromptTokenizer, train_tokenizer
from reelforge.registry.models import load_pipeline, log_and_register
from reelforge.registry.tracking import setup
from serving.deploy import deploy, load_profile, stop

PROMPT = "a red circle moves left over a black background"


def _register(root: Path, cfg: ServeConfig, steps: int) -> str:
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
    return version


def _pct(values: list[float]) -> dict:
    if not values:
        return {"p50_s": None, "p95_s": None, "p99_s": None}
    return {f"p{q}_s": float(np.percentile(values, q)) for q in (50, 95, 99)}


def _batches(url: str) -> tuple[float, float]:
    """(videos, model calls) so far, from the replica's reelforge_batch_size histogram."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    total = sum(float(v) for v in re.findall(r"^reelforge_batch_size_sum\{[^}]*\} (\S+)$", text, re.M))
    count = sum(float(v) for v in re.findall(r"^reelforge_batch_size_count\{[^}]*\} (\S+)$", text, re.M))
    return total, count


def _mean_batch(before: tuple[float, float], after: tuple[float, float]) -> float:
    calls = after[1] - before[1]
    return (after[0] - before[0]) / calls if calls else 0.0


# --- overhead: one request at a time -----------------------------------------------------------------
def _in_process(name: str, version: str, n: int) -> list[float]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the cpu profile's replica
    try:
        pipeline = load_pipeline(name, version)
        pipeline.generate([PROMPT], [0])  # warm-up, as the endpoint's
        out = []
        for i in range(n):
            t0 = time.perf_counter()
            encode_mp4(pipeline.generate([PROMPT], [i])[0], pipeline.fps)
            out.append(time.perf_counter() - t0)
        return out
    finally:
        torch.set_num_threads(threads)


def _sync_sequential(url: str, n: int) -> list[float]:
    out = []
    with httpx.Client(timeout=600) as client:
        for i in range(n):
            t0 = time.perf_counter()
            client.post(f"{url}/v1/generate", json={"prompt": PROMPT, "seed": i}).raise_for_status()
            out.append(time.perf_counter() - t0)
    return out


def _job_sequential(url: str, n: int) -> list[float]:
    out = []
    with httpx.Client(timeout=600) as client:
        for i in range(n):
            t0 = time.perf_counter()
            job = client.post(f"{url}/v1/videos", json={"prompt": PROMPT, "seed": i}).json()["url"]
            while client.get(url + job).json()["status"] != "succeeded":
                time.sleep(0.05)
            client.get(f"{url}{job}/content").raise_for_status()
            out.append(time.perf_counter() - t0)
    return out


# --- concurrency -------------------------------------------------------------------------------------
async def _clients(url: str, clients: int, requests: int) -> dict:
    """`clients` concurrent clients, `requests` each, on /v1/generate: statuses and latencies."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    async def client(c: int, http: httpx.AsyncClient) -> None:
        for i in range(requests):
            t0 = time.perf_counter()
            r = await http.post(f"{url}/v1/generate", json={"prompt": PROMPT, "seed": c * 1000 + i})
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            if r.status_code == 200:
                latencies.append(time.perf_counter() - t0)
            elif r.status_code != 503:
                raise RuntimeError(f"unexpected {r.status_code}: {r.text[:300]}")

    limits = httpx.Limits(max_connections=clients + 4)
    async with httpx.AsyncClient(timeout=600, limits=limits) as http:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(c, http) for c in range(clients)))
        wall = time.perf_counter() - t0
    total = sum(statuses.values())
    return {"clients": clients, "requests": total, "statuses": statuses, "wall_s": wall,
            "videos_per_s": len(latencies) / wall, "share_503": statuses.get(503, 0) / total,
            **_pct(latencies)}  # fmt: skip


def _jobs(url: str, n: int) -> dict:
    t0 = time.perf_counter()
    with httpx.Client(timeout=60) as client:
        urls = [client.post(f"{url}/v1/videos", json={"prompt": PROMPT, "seed": i}).json()["url"]
                for i in range(n)]  # fmt: skip
        done = []
        for u in urls:  # in submission order, which is about the order they finish: few polls, little load
            while client.get(url + u).json()["status"] != "succeeded":
                time.sleep(0.1)
            done.append(time.perf_counter() - t0)
    wall = max(done)
    return {
        "videos": n,
        "wall_s": wall,
        "videos_per_s": n / wall,
        "median_latency_s": statistics.median(done),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--latency-requests", type=int, default=8)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=2, help="per client")
    ap.add_argument("--jobs", type=int, default=16)
    ap.add_argument("--load", type=int, nargs="+", default=[1, 4, 16, 32], help="concurrencies")
    ap.add_argument("--load-requests", type=int, default=1, help="per client")
    ap.add_argument("--steps", type=int, default=20, help="sampling steps (the demo's)")
    ap.add_argument("--port", type=int, default=8141)
    ap.add_argument("--ray-port", type=int, default=6395)
    ap.add_argument("--out", default="reports/bench_serve.json")
    args = ap.parse_args()
    out = Path(args.out).resolve()
    root = Path(tempfile.mkdtemp(prefix="bench_serve_"))
    os.chdir(root)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    params = Params().model_dump()
    params["serve"].update(
        port=args.port, ray_port=args.ray_port, rate_limit_per_minute=0, max_queued_jobs=1000
    )
    cfg = Params(**params).stage(ServeConfig)
    url = f"http://127.0.0.1:{args.port}"
    version = _register(root, cfg, args.steps)
    profile = load_profile(cfg.serve.profile)
    result: dict = {"args": vars(args), "device": "cpu", "torch_threads": profile["torch_threads"],
                    "profile": cfg.serve.profile}  # fmt: skip
    try:
        batching = []
        for k, size in enumerate(args.batch_sizes):
            deploy(cfg, root, profile_overrides={"max_batch_size": size})
            _sync_sequential(url, 1)  # warm-up
            if k == 0:
                n = args.latency_requests
                lat = {"in_process": _in_process(cfg.registry.model_name, version, n),
                       "sync": _sync_sequential(url, n), "job": _job_sequential(url, n)}  # fmt: skip
                base = statistics.median(lat["in_process"])
                result["overhead"] = {
                    mode: {"p50_s": statistics.median(v), "vs_in_process": statistics.median(v) / base}
                    for mode, v in lat.items()
                }
                result["overhead"]["job_vs_sync"] = statistics.median(lat["job"]) / statistics.median(
                    lat["sync"]
                )
                result["load"] = [asyncio.run(_clients(url, c, args.load_requests)) for c in args.load]
            b0 = _batches(url)
            sync = asyncio.run(_clients(url, args.clients, args.requests))
            b1 = _batches(url)
            jobs = _jobs(url, args.jobs)
            sync["mean_batch"], jobs["mean_batch"] = _mean_batch(b0, b1), _mean_batch(b1, _batches(url))
            batching.append({"max_batch_size": size, "sync": sync, "jobs": jobs})
            stop(cfg, stop_ray=False)  # the next size starts from a fresh replica
        result["batching"] = batching
    finally:
        stop(cfg)
    _report(result, profile)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")


def _report(result: dict, profile: dict) -> None:
    o = result["overhead"]
    print(f"\none request at a time ({result['args']['latency_requests']} each)")
    print(f"{'path':>12} {'p50 s':>8} {'x in-process':>13}")
    for mode in ("in_process", "sync", "job"):
        print(f"{mode:>12} {o[mode]['p50_s']:>8.3f} {o[mode]['vs_in_process']:>13.3f}")
    print(f"job / sync at p50: {o['job_vs_sync']:.3f}")
    print(
        f"\nload on /v1/generate (max_ongoing_requests {profile['max_ongoing_requests']}, "
        f"max_queued_requests {profile['max_queued_requests']}, "
        f"max_batch_size {result['args']['batch_sizes'][0]})"
    )
    print(
        f"{'clients':>8} {'requests':>9} {'503 share':>10} "
        f"{'p50 s':>7} {'p95 s':>7} {'p99 s':>7} {'videos/s':>9}"
    )
    for r in result["load"]:
        p = [f"{r[k]:>7.2f}" if r[k] is not None else f"{'-':>7}" for k in ("p50_s", "p95_s", "p99_s")]
        print(
            f"{r['clients']:>8} {r['requests']:>9} {r['share_503']:>10.2f} "
            f"{' '.join(p)} {r['videos_per_s']:>9.2f}"
        )
    base = result["batching"][0]
    print(f"\nbatching ({result['args']['clients']} sync clients; {result['args']['jobs']} jobs at once)")
    print(f"{'max_batch_size':>14} {'sync videos/s':>14} {'x base':>7} {'batch':>6} "
          f"{'jobs videos/s':>14} {'x base':>7} {'batch':>6}")  # fmt: skip
    for r in result["batching"]:
        r["sync"]["vs_base"] = r["sync"]["videos_per_s"] / base["sync"]["videos_per_s"]
        r["jobs"]["vs_base"] = r["jobs"]["videos_per_s"] / base["jobs"]["videos_per_s"]
        s, j = r["sync"], r["jobs"]
        print(f"{r['max_batch_size']:>14} {s['videos_per_s']:>14.2f} {s['vs_base']:>7.2f} "
              f"{s['mean_batch']:>6.2f} "
              f"{j['videos_per_s']:>14.2f} {j['vs_base']:>7.2f} {j['mean_batch']:>6.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
