"""The whole flow, as a user runs it: a temp Git repo, real DVC, Prefect, MLflow (SQLite), Ray Serve."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from reelforge.config import ClipParams, IngestParams
from reelforge.files import file_sha256
from tests.conftest import expected_clips
from tests.e2e.project import BIN, make_project, mlflow_review_pages, screenshot_pages, sh

PORT, RAY_PORT = 8123, 6391

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    proj = make_project(tmp_path_factory.mktemp("project"), serve={"port": PORT, "ray_port": RAY_PORT})
    first = sh(proj, "reelforge", "run")
    yield proj, first
    sh(proj, "reelforge", "serve", "stop", check=False)


def test_ingest_outputs_match_ground_truth(project):
    proj, _ = project
    truth = json.loads((proj / "data/raw/ground_truth.json").read_text())
    manifest = pd.read_parquet(proj / "data/clips/manifest.parquet")
    rejects = pd.read_parquet(proj / "data/clips/rejects.parquet")
    cut = pd.concat([manifest, rejects[rejects.start_s.notna()]])  # kept + filtered/near-duplicate clips
    assert cut.groupby("source_path").size().to_dict() == expected_clips(
        truth, ClipParams(), IngestParams().max_clips_per_shot
    )
    file_rejects = set(rejects[rejects.start_s.isna()].source_path)
    assert file_rejects == {v["file"] for v in truth["videos"] if v["kind"] == "broken"}
    assert json.loads((proj / "reports/ingest.json").read_text())["clips"] == len(manifest)


def test_every_clip_has_a_caption(project):
    proj, _ = project
    manifest = pd.read_parquet(proj / "data/clips/manifest.parquet")
    captions = pd.read_parquet(proj / "data/captions/captions.parquet")
    assert set(captions.clip_id) == set(manifest.clip_id)
    assert captions.caption.str.strip().str.len().min() > 0
    assert {"given", "model"} == set(captions.caption_source)


def test_champion_registered_with_metrics_in_mlflow(project):
    proj, _ = project
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(f"sqlite:///{proj / 'mlflow.db'}")
    client = MlflowClient()
    champion = client.get_model_version_by_alias("reelforge-t2v", "champion")
    assert str(champion.version) == "1"
    assert {"metric.fvd_ref", "metric.clip_score_ref", "metric.caption_match_ref"} <= set(champion.tags)
    eval_run = client.get_run(champion.tags["eval_run_id"])
    metrics, protocol = eval_run.data.metrics, eval_run.data.params
    assert {
        "candidate.fvd_ref",
        "candidate.fvd_custom",
        "candidate.fvd_custom_ci_low",
        "candidate.clip_score_ref_ci_high",
        "floor.fvd_custom",
        "floor.fvd_ref",
        "floor.fvd_ref_ci_low",
        "candidate.fvd_ref_floor_n",
        "candidate.fvd_custom_floor_n",
        "candidate.caption_match_ref_ci_low",
        "candidate.pixel_all_acc_ci_high",
        "candidate.clip_score",
        "candidate.clip_score_ci_low",
        "real.clip_score",
        "candidate.pixel_color_acc",
        "candidate.pixel_single_blob_acc_ci_low",
        "real.pixel_all_acc",
        "chance.pixel_shape_acc",
    } <= set(metrics)
    assert metrics["candidate.fvd_custom_ci_low"] < metrics["candidate.fvd_custom_ci_high"]
    assert metrics["real.pixel_all_acc"] >= 0.95  # the check reads real clips right: it can be trusted
    assert protocol["protocol.extractor"].startswith("reelforge-ref-")
    assert protocol["protocol.floor_n"] == str(int(protocol["protocol.n_real"]) // 2)
    assert "protocol.prompts_equal_to_a_training_caption" in protocol
    assert protocol["protocol.candidate.steps"] == "4"  # what v1 sampled with: its own generation.json
    assert protocol["protocol.fvd_extractor_sha256"] == file_sha256(proj / "i3d_torchscript.pt")
    assert (
        protocol["protocol.fvd_metric"] == "fvd_custom"
    )  # a random I3D is never reported as the standard fvd
    assert not any(k.startswith(("candidate.fvd_", "floor.fvd_")) and "custom" not in k and "ref" not in k
                   for k in metrics)  # fmt: skip
    assert protocol["protocol.clip_score_model_sha256"] == file_sha256(proj / "tiny-clip/model.safetensors")
    artifacts = {a.path for a in client.list_artifacts(eval_run.info.run_id, "samples")}
    assert {"samples/candidate_v1.gif", "samples/candidate_v1.mp4"} <= artifacts
    train_run = client.get_run(champion.run_id)
    assert "loss" in train_run.data.metrics and "data.manifest_sha256" in train_run.data.params
    # the runs of one pipeline execution carry its Prefect flow run
    assert eval_run.data.tags["pipeline_run"] == train_run.data.tags["pipeline_run"] != ""
    # what a reviewer reads in the MLflow UI: the decision on the evaluation run, the lineage on the version
    note = eval_run.data.tags["mlflow.note.content"]
    assert (
        "**Promoted**" in note and "| fvd_custom (an I3D that is not the pinned one) at the floor's n" in note
    )
    assert f"runs/{champion.run_id}" in champion.description and "data/clips" in champion.description
    assert client.get_experiment(eval_run.info.experiment_id).tags["mlflow.experimentKind"] == (
        "custom_model_development"
    )


def test_the_pixel_gate_rejects_an_undertrained_model(project):
    """The first run's model trained 20 steps: with the pixel thresholds the demo aims for, the promotion
    gate does not pass it, and names what its videos do not show."""
    from reelforge.config import PromoteParams
    from reelforge.promote import decide

    report = json.loads((project[0] / "reports/metrics.json").read_text())
    targets = {"background": 0.9, "color": 0.8, "single_blob": 0.8, "direction": 0.6}
    gates = PromoteParams(max_fvd_ref_ratio=1e6, min_clip_score_ref_ratio=0.0, min_pixel_acc=targets)
    failures, evidence = decide(gates, report)  # the pixel gate alone
    assert failures and all(f.split(":")[0] in targets for f in failures), failures
    assert any("of the videos show the prompted" in f for f in failures)
    assert any(e.startswith("pixel_single_blob_acc: candidate") for e in evidence)


def _alias(proj: Path) -> str:
    from mlflow import MlflowClient

    uri = f"sqlite:///{proj / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    return str(client.get_model_version_by_alias("reelforge-t2v", "champion").version)


def _set_alias(proj: Path, version: str) -> None:
    sh(
        proj,
        sys.executable,
        "-c",
        "import mlflow; from reelforge.registry.tracking import move_alias; "
        "mlflow.set_tracking_uri('sqlite:///mlflow.db'); mlflow.set_registry_uri('sqlite:///mlflow.db'); "
        f"move_alias('reelforge-t2v', 'champion', '{version}', 'promote', 'set by the e2e test')",
    )


@pytest.fixture(scope="module")
def second_version(project) -> str:
    """Another registered version of the same model (2 training steps), outside the DVC pipeline."""
    proj, _ = project
    sh(
        proj, "reelforge", "train", "--clips", "data/clips", "--captions", "data/captions",
        "--output", str(proj / "scratch/t2v"), "--registration", str(proj / "scratch/registration.json"),
        "--checkpoints", str(proj / "scratch/checkpoints"), "--set", "train.steps=2",
    )  # fmt: skip
    return json.loads((proj / "scratch/registration.json").read_text())["version"]


def test_endpoint_serves_the_champion(project):
    from reelforge.data.video import decode_bytes

    url = f"http://127.0.0.1:{PORT}"
    r = httpx.post(
        f"{url}/v1/generate",
        json={"prompt": "a red circle moves left over a black background", "seed": 3},
        timeout=120,
    )
    assert r.status_code == 200 and r.headers["content-type"] == "video/mp4"
    assert decode_bytes(r.content).shape[0] == 16  # the frame count the model trained at
    info = httpx.get(f"{url}/v1/model").json()
    assert info["version"] == r.headers["x-model-version"] == _alias(project[0])
    assert info["device"] == "cpu" and info["autocast"] is None  # serve.profile cpu
    bad = httpx.post(f"{url}/v1/generate", json={"prompt": "", "steps": 3}, timeout=30)
    assert bad.status_code == 422  # the ErrorBody the OpenAPI document declares for every error
    assert bad.json()["errors"][0]["loc"] == ["body", "prompt"] and "prompt:" in bad.json()["detail"]
    many = httpx.post(f"{url}/v1/generate", json={"prompt": "a", "steps": 10_000}, timeout=30)
    assert many.status_code == 422 and many.json()["errors"][0]["loc"] == ["body", "steps"]
    assert httpx.post(f"{url}/v1/generate", content=b"{not json", timeout=30).status_code == 422


def test_the_flow_run_shows_each_stages_summary_as_an_artifact(project):
    proj, _ = project
    code = (
        "import asyncio\nfrom prefect.client.orchestration import get_client\n"
        "async def main():\n    async with get_client() as client:\n"
        "        for a in await client.read_artifacts():\n            print(a.key, a.data.splitlines()[0])\n"
        "asyncio.run(main())"
    )
    out = sh(proj, sys.executable, "-c", code).stdout
    for stage in ("ingest", "caption", "train", "evaluate", "promote"):
        assert f"{stage}-summary ## {stage}: ran" in out, out


def test_second_run_changes_nothing(project):
    proj, first = project
    assert first.stdout.count(" ran ") == 5, first.stdout
    second = sh(proj, "reelforge", "run")
    assert second.stdout.count("up to date") == 5, second.stdout
    assert "Data and pipelines are up to date" in sh(proj, "dvc", "status").stdout
    status = sh(proj, "reelforge", "status").stdout
    champion = _alias(proj)
    assert f"champion: reelforge-t2v v{champion}" in status and f"up, serving v{champion}" in status
    assert "pixel check (share of its videos showing the prompted ...): background" in status


def _under_load(url: str, action) -> tuple[list, list]:
    """Run `action` while a client keeps calling /v1/generate and four jobs are queued and running:
    (status and version of every sync answer, every job once finished)."""
    import threading

    jobs = [
        httpx.post(f"{url}/v1/videos", json={"prompt": "a red circle", "seed": i}, timeout=30).json()["url"]
        for i in range(4)
    ]
    seen: list[tuple[int, str | None]] = []
    done = threading.Event()

    def client() -> None:
        while not done.is_set():
            r = httpx.post(f"{url}/v1/generate", json={"prompt": "a red circle", "steps": 1}, timeout=60)
            seen.append((r.status_code, r.headers.get("x-model-version")))

    thread = threading.Thread(target=client)
    thread.start()
    try:
        action()
    finally:
        done.set()
        thread.join(timeout=120)
    finished = []
    for job_url in jobs:
        while (job := httpx.get(url + job_url, timeout=30).json())["status"] in ("queued", "running"):
            time.sleep(0.2)
        finished.append(job)
    return seen, finished


def test_promotion_and_rollback_under_load_lose_nothing(project, second_version):
    """Move the alias to another version and redeploy, then `reelforge rollback`, each while a client keeps
    calling and jobs are queued and running: no request fails, every job finishes, on one of the two."""
    proj, _ = project
    url = f"http://127.0.0.1:{PORT}"
    before = httpx.get(f"{url}/v1/model").json()["version"]
    target = "1" if before == second_version else second_version
    _set_alias(proj, target)
    seen, finished = _under_load(url, lambda: sh(proj, "reelforge", "serve", "deploy"))
    assert seen and all(code == 200 for code, _ in seen), seen
    assert seen[0][1] == before and httpx.get(f"{url}/v1/model").json()["version"] == target
    assert all(j["status"] == "succeeded" for j in finished), finished
    assert {j["model_version"] for j in finished} <= {before, target}
    out = []
    seen, finished = _under_load(
        url,
        lambda: out.append(sh(proj, "reelforge", "rollback", "--reason", "e2e: the new version is worse")),
    )
    assert f"v{target} -> v{before}" in out[0].stdout, out[0].stdout
    assert seen and all(code == 200 for code, _ in seen), seen
    assert all(j["status"] == "succeeded" for j in finished), finished
    assert {j["model_version"] for j in finished} <= {before, target}
    assert httpx.get(f"{url}/v1/model").json()["version"] == before == _alias(proj)


def test_evaluate_a_registered_version_against_the_champion(project, second_version):
    """`reelforge evaluate --version 1` scores v1 and the champion in one run."""
    proj, _ = project
    before = _alias(proj)
    _set_alias(proj, second_version)
    out = proj / "scratch/metrics_v1.json"
    truth = json.loads((proj / "data/raw/ground_truth.json").read_text())
    del truth["palette"]  # a ground-truth file written before palettes were recorded
    (proj / "scratch/old_truth.json").write_text(json.dumps(truth))
    try:
        run = sh(
            proj, "reelforge", "evaluate", "--version", "1", "--clips", "data/clips",
            "--captions", "data/captions", "--prompts", "evaluation/prompts.txt", "--metrics", str(out),
            "--ground-truth", "scratch/old_truth.json", "--set", "evaluate.bootstrap=0",
        )  # fmt: skip
    finally:
        _set_alias(proj, before)
    report = json.loads(out.read_text())
    assert "pixel check off: scratch/old_truth.json has no palette" in run.stdout
    assert "pixel_color_acc" not in report["candidate"] and report["protocol"]["pixel_check"] is None
    assert report["candidate"]["version"] == "1" and report["champion"]["version"] == second_version
    assert report["protocol"]["n_generated"] == 12 and "fvd_custom" in report["champion"]
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(f"sqlite:///{proj / 'mlflow.db'}")
    artifacts = {a.path for a in MlflowClient().list_artifacts(report["eval_run_id"], "samples")}
    assert f"samples/candidate_v1_vs_champion_v{second_version}.gif" in artifacts  # one grid, side by side
    usage = sh(
        proj, "reelforge", "evaluate", "--clips", "x", "--captions", "y", "--prompts", "p", "--metrics", "z",
        check=False,
    )  # fmt: skip
    assert usage.returncode == 2 and "exactly one of --registration" in usage.stdout


def test_a_reviewer_can_decide_from_the_mlflow_ui(project, tmp_path):
    """`reelforge ui`, opened in Debian's Chromium (Playwright): the experiment opens on its runs, the
    champion's version page shows where it came from, and its evaluation run shows the metrics with
    intervals and the decision. Screenshots in the test's temporary folder."""
    from mlflow import MlflowClient

    proj, _ = project
    uri = f"sqlite:///{proj / 'mlflow.db'}"
    champion = MlflowClient(tracking_uri=uri, registry_uri=uri).get_model_version_by_alias(
        "reelforge-t2v", "champion"
    )
    decided = json.loads((proj / "reports/promotion.json").read_text())["eval_run_id"]
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    log = (tmp_path / "ui.log").open("w")
    ui = subprocess.Popen(
        ["reelforge", "ui", "--port", "5071"], cwd=proj, env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline, url = time.monotonic() + 120, None
        while True:  # the printed address (the experiment's runs), then the server's health
            if url is None:
                lines = (tmp_path / "ui.log").read_text().splitlines()
                url = next((line.split()[3] for line in lines if line.startswith("MLflow UI on")), None)
            try:
                if url and httpx.get("http://127.0.0.1:5071/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "ui.log").read_text()[-2000:]
            time.sleep(1)
        pages = mlflow_review_pages("http://127.0.0.1:5071", url, str(champion.version), decided)
        screenshot_pages(pages, tmp_path)
        assert len(list(tmp_path.glob("mlflow_*.png"))) == 3
    finally:
        os.killpg(ui.pid, 15)
        ui.wait(timeout=30)
