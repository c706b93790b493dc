"""A demo project as a user has it: the repo's pipeline files in a temp Git repo, tiny training settings, a
random I3D and CLIP loaded by the real loading code, and 10 demo videos in data/raw (tracked by DVC)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import REPO
from tests.tiny_models import save_tiny_clip, save_tiny_i3d

PROJECT_FILES = [
    "dvc.yaml",
    "params.yaml",
    "pyproject.toml",
    ".dvcignore",
    ".gitignore",
    ".dvc/config",
    "evaluation",
    "src",
    "serving",
    "flows",
]
BIN = Path(sys.executable).parent


def sh(
    cwd: Path, *cmd: str, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run a command in the project as a user's shell would, with the embedded defaults unless `env` says
    otherwise."""
    full = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "PREFECT_HOME": str(cwd / ".prefect"),
    }
    for var in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS", "PREFECT_API_URL"):
        full.pop(var, None)
    proc = subprocess.run(cmd, cwd=cwd, env=full | (env or {}), capture_output=True, text=True, timeout=1500)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    return proc


def make_project(proj: Path, **sections: dict) -> Path:
    """The project in `proj`, with the tiny settings, then `sections` (params.yaml section -> updates)."""
    for name in PROJECT_FILES:
        src, dst = REPO / name, proj / name
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dst)
    params = yaml.safe_load((proj / "params.yaml").read_text())
    params["ingest"]["val_fraction"] = 0.35  # >= 4 validation clips from 10 videos: the split-half floor
    params["caption"]["steps"] = 120
    params["train"].update(steps=20, log_every_n_steps=5)
    params["sample"]["steps"] = 4
    i3d = save_tiny_i3d(proj / "i3d_torchscript.pt")  # a random I3D, loaded by the real loading code
    clip = save_tiny_clip(proj / "tiny-clip")  # a random CLIP directory, loaded with from_pretrained
    params["evaluate"].update(
        samples_per_prompt=1, gif_prompts=2, i3d_path=str(i3d), clip_path=str(clip), bootstrap=50
    )
    params["promote"].update(
        max_fvd_ref_ratio=1e6, min_clip_score_ref_ratio=0.0, min_pixel_acc={}
    )  # a 20-step model: gates open
    params["serve"]["rate_limit_per_minute"] = 0  # clients call in loops
    for section, updates in sections.items():
        params[section].update(updates)
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(proj, "git", "init", "-q")
    sh(proj, "git", "add", "-A")
    sh(proj, "git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "project")
    data = ["--videos", "10", "--seed", "5", "--held-out", "evaluation/prompts.txt"]
    sh(proj, "reelforge", "demo-data", "data/raw", *data)  # DVC, not Git, tracks it
    return proj


def screenshot_pages(pages: dict[str, tuple], out: Path) -> list[Path]:
    """Open each page (address, texts[, tabs]) in Debian's Chromium (Playwright), click each tab named, wait
    until the page holds each text, and save a screenshot."""
    from playwright.sync_api import sync_playwright

    shots = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"))
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            for name, (address, texts, *tabs) in pages.items():
                page.goto(address)
                for tab in tabs:
                    page.get_by_text(tab, exact=True).first.click(timeout=60_000)
                for text in texts:
                    page.get_by_text(text).first.wait_for(state="attached", timeout=60_000)
                page.screenshot(path=out / f"{name}.png")
                shots.append(out / f"{name}.png")
        finally:
            browser.close()
    return shots


def mlflow_review_pages(base: str, experiment_page: str, version: str, eval_run: str) -> dict:
    """What a reviewer opens in the MLflow UI, with the texts each must show: the experiment's runs, the
    champion's version page (where it came from), and the evaluation run promote decided on."""
    return {
        "mlflow_experiment": (experiment_page, ["evaluate v1", "Runs"]),
        "mlflow_version": (
            f"{base}/#/models/reelforge-t2v/versions/{version}",
            ["Training run:", "Evaluation run:", "Git commit:", "Promotion: promoted"],
        ),
        "mlflow_evaluation": (  # the run promote decided on (`evaluate --version` may re-tag the version)
            experiment_page.replace("?", f"/runs/{eval_run}?"),
            ["Promoted", "fvd_ref at the floor's n", "real clips", "floor"],
        ),
    }
