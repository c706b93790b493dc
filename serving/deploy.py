"""Put the champion behind Ray Serve, and take it down.

A local Ray head is started detached (`ray start --head`) so the endpoint outlives the command that
deployed it; with RAY_ADDRESS set, the app goes to that cluster instead.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import httpx
import yaml

from reelforge.config import ServeConfig
from reelforge.registry.tracking import champion_version, setup
from serving.auth import ENV, KeyRing, is_loopback
from serving.jobs import default_url

APP_NAME = "reelforge"


def _ray_bin() -> str:
    return shutil.which("ray", path=str(Path(sys.executable).parent)) or "ray"


def ray_address(cfg: ServeConfig) -> str:
    return os.environ.get("RAY_ADDRESS") or f"127.0.0.1:{cfg.serve.ray_port}"


def ensure_ray_head(cfg: ServeConfig) -> str:
    """Start a detached local Ray head on serve.ray_port unless RAY_ADDRESS names a cluster or one is up."""
    address = ray_address(cfg)
    if os.environ.get("RAY_ADDRESS") or _ray_up(address):
        return address
    cmd = [
        _ray_bin(),
        "start",
        "--head",
        f"--port={cfg.serve.ray_port}",
        f"--num-cpus={os.cpu_count()}",
        "--include-dashboard=false",
        "--disable-usage-stats",
    ]
    # Serve kills a proxy that is not ready within 5 s; on a busy 2-core machine (training beside it) that
    # fails `serve.start`. The head's processes inherit this environment.
    env = {"RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "30"} | dict(os.environ)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` failed:\n{proc.stdout}\n{proc.stderr}")
    return address


def _ray_up(address: str) -> bool:
    proc = subprocess.run([_ray_bin(), "status", f"--address={address}"], capture_output=True, text=True)
    return proc.returncode == 0


def endpoint(cfg: ServeConfig) -> str:
    return f"http://{cfg.serve.host}:{cfg.serve.port}"


def deploy(
    cfg: ServeConfig,
    project_root: str | Path | None = None,
    wait_s: float = 300,
    profile_overrides: dict | None = None,
) -> dict:
    """Deploy (or reconfigure in place) the app serving the current champion version. `profile_overrides`
    replace keys of the serve.profile (benchmarks compare batch sizes with it)."""
    import ray
    from ray import serve

    uri = setup(cfg.registry, project_root)
    name, alias = cfg.registry.model_name, cfg.registry.alias
    version = champion_version(name, alias)
    if version is None:
        raise RuntimeError(
            f"model {name!r} has no {alias!r} alias: no version has passed the promotion "
            "gates yet (reports/promotion.json says why; the gates are params.yaml promote.*)"
        )
    profile = load_profile(cfg.serve.profile) | (profile_overrides or {})
    root = Path(project_root or Path.cwd()).resolve()
    keys = keys_file(cfg, root)
    check_open_endpoint(cfg.serve.host, keys)
    state = root / cfg.serve.state_dir
    address = ensure_ray_head(cfg)
    ray.init(address=address, logging_level="ERROR", log_to_driver=False)
    try:
        serve.start(http_options={"host": cfg.serve.host, "port": cfg.serve.port})
        app_module, limits_env = request_schema(cfg)
        user_config = {
            "tracking_uri": uri,
            "model_name": name,
            "version": version,
            "alias": alias,
            "torch_threads": profile["torch_threads"],
            "device": profile["device"],
            "autocast": profile["autocast"],
            "jobs": {
                "url": cfg.serve.jobs_url or default_url(state),
                "results_dir": str(state / "results"),
                "result_ttl_s": cfg.serve.result_ttl_s,
                "stale_s": cfg.serve.job_stale_s,
                "max_queued": cfg.serve.max_queued_jobs,
                "graceful_s": profile["graceful_shutdown_timeout_s"],
            },
            "batching": {k: profile[k] for k in ("max_batch_size", "batch_wait_timeout_s")},
            "api_keys_file": str(keys),
            "rate_limit_per_minute": cfg.serve.rate_limit_per_minute,
        }
        options = deployment_options(profile)
        options["ray_actor_options"]["runtime_env"] = {"env_vars": limits_env}
        app = app_module.Generator.options(user_config=user_config, **options).bind()
        serve.run(app, name=APP_NAME, route_prefix="/", blocking=False)
    finally:
        ray.shutdown()
    _wait_healthy(cfg, version, wait_s)
    return {"model_name": name, "version": version, "url": endpoint(cfg), "ray_address": address}


def request_schema(cfg: ServeConfig) -> tuple[ModuleType, dict]:
    """`serving.app` with params' request limits (serve.max_*) in its request schema, and the environment
    that gives its replicas the same: the schema is fixed when the module is imported."""
    import serving.app

    limits = {k: getattr(cfg.serve, k) for k in serving.app.LIMIT_KEYS}
    env = {serving.app.LIMITS_ENV: json.dumps(limits)}
    os.environ.update(env)
    if serving.app.LIMITS != limits:  # imported before, under other params
        importlib.reload(serving.app)
    return serving.app, env


def load_profile(name: str) -> dict:
    import serving

    return yaml.safe_load((Path(serving.__file__).parent / "profiles.yaml").read_text())[name]


def deployment_options(profile: dict) -> dict:
    """Serve deployment options from a profile of serving/profiles.yaml: a fixed replica count, or an
    autoscaling config (replicas between min and max, by ongoing requests per replica)."""
    scaling = (
        {"autoscaling_config": profile["autoscaling"]}
        if profile.get("autoscaling")
        else {"num_replicas": profile["num_replicas"]}
    )
    return scaling | {
        "max_ongoing_requests": profile["max_ongoing_requests"],
        "max_queued_requests": profile["max_queued_requests"],
        "graceful_shutdown_timeout_s": profile["graceful_shutdown_timeout_s"],
        "ray_actor_options": {"num_cpus": profile["num_cpus"], "num_gpus": profile["num_gpus"]},
    }


def keys_file(cfg: ServeConfig, project_root: str | Path | None = None) -> Path:
    path = Path(cfg.serve.api_keys_file)
    return path if path.is_absolute() else Path(project_root or Path.cwd()).resolve() / path


def check_open_endpoint(host: str, keys_file: Path) -> None:
    """Refuse to start an endpoint without API keys on anything but a loopback address."""
    if is_loopback(host) or KeyRing(keys_file).enabled:
        return
    raise RuntimeError(
        f"serve.host is {host}, reachable from other machines, and no API key is configured: "
        f"add one with `reelforge serve key add NAME` (serve.api_keys_file) or set {ENV}, "
        "or bind to 127.0.0.1"
    )


def _wait_healthy(cfg: ServeConfig, version: str, wait_s: float) -> None:
    deadline, last = time.monotonic() + wait_s, "no answer"
    while time.monotonic() < deadline:
        try:
            r = httpx.get(endpoint(cfg) + "/healthz", timeout=5)
            if r.status_code == 200 and r.json().get("version") == version:
                return
            last = f"{r.status_code} {r.text[:200]}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(1)
    raise TimeoutError(f"endpoint {endpoint(cfg)} not serving v{version} after {wait_s}s: {last}")


def endpoint_status(cfg: ServeConfig) -> dict | None:
    """GET /v1/model, or None when nothing answers."""
    try:
        r = httpx.get(endpoint(cfg) + "/v1/model", timeout=3)
        return r.json() if r.status_code == 200 else None
    except httpx.HTTPError:
        return None


def stop(cfg: ServeConfig, stop_ray: bool = True) -> None:
    """Shut the Serve app down and, for the local head this project started, stop Ray."""
    import ray
    from ray import serve

    address = ray_address(cfg)
    if not _ray_up(address):
        return
    ray.init(address=address, logging_level="ERROR", log_to_driver=False)
    try:
        serve.shutdown()
    finally:
        ray.shutdown()
    if stop_ray and not os.environ.get("RAY_ADDRESS"):
        subprocess.run([_ray_bin(), "stop"], capture_output=True, text=True)
