"""The endpoint on a real local Ray Serve, serving a small registered model from a real MLflow (SQLite):
async jobs with progress, cancel and delete, a bounded queue, API keys, metrics, request ids, the page, and
a job that survives its replica being killed."""

from __future__ import annotations

import os
import shutil
import time

import httpx
import mlflow
import pytest
from mlflow import MlflowClient

from reelforge.config import Params, ServeConfig
from reelforge.data.video import decode_bytes
from reelforge.registry.models import log_and_register
from serving.auth import add_key, revoke_key
from serving.deploy import deploy, stop
from tests.tiny_models import register_tiny_champion

pytestmark = pytest.mark.slow
PORT, RAY_PORT = 8131, 6393
URL = f"http://127.0.0.1:{PORT}"
PROMPT = "a red circle moves left over a black background"
MAX_PROMPT = 60


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("serving")
    cwd = os.getcwd()
    os.chdir(root)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ.pop("RAY_ADDRESS", None)
    params = Params().model_dump()
    params["serve"].update(
        port=PORT,
        ray_port=RAY_PORT,
        max_queued_jobs=2,
        job_stale_s=3,
        rate_limit_per_minute=0,
        max_prompt_chars=MAX_PROMPT,
    )
    cfg = Params(**params).stage(ServeConfig)
    version = register_tiny_champion(root, cfg.registry, [PROMPT])
    with mlflow.start_run():
        log_and_register(root / "t2v", cfg.registry.model_name)  # a second version, for a promotion
    try:
        deploy(cfg, root)
        yield cfg, root, version
    finally:
        stop(cfg)
        os.chdir(cwd)


def _wait_job(url, headers=None, until=("succeeded", "failed", "cancelled"), timeout=120):
    deadline = time.monotonic() + timeout
    while True:
        job = httpx.get(URL + url, headers=headers, timeout=30).json()
        if job["status"] in until:
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.1)


def test_a_job_is_queued_polled_and_its_video_fetched(served):
    _, _, version = served
    r = httpx.post(f"{URL}/v1/videos", json={"prompt": PROMPT, "seed": 3, "num_frames": 8}, timeout=30)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "queued" and r.headers["location"] == body["url"] == f"/v1/videos/{body['id']}"
    job = _wait_job(body["url"])
    assert job["status"] == "succeeded" and job["progress"] == 1.0 and job["model_version"] == version
    assert job["timings"]["running_s"] > 0 and job["request"]["num_frames"] == 8
    video = httpx.get(f"{URL}{body['url']}/content", timeout=30)
    assert video.headers["content-type"] == "video/mp4" and decode_bytes(video.content).shape[:2] == (8, 32)
    # The same request made synchronously gives the same frames (one inference path). Compared as GIF: x264
    # in a replica codes the same frames to different MP4 bytes from call to call (up to 25 levels apart).
    gif = {"prompt": PROMPT, "seed": 3, "num_frames": 8, "format": "gif"}
    queued = _wait_job(httpx.post(f"{URL}/v1/videos", json=gif, timeout=30).json()["url"])
    queued_gif = httpx.get(f"{URL}/v1/videos/{queued['id']}/content", timeout=30).content
    sync = httpx.post(f"{URL}/v1/generate", json=gif, timeout=60)
    assert sync.content == queued_gif
    wide = httpx.post(f"{URL}/v1/generate", json={"prompt": PROMPT, "num_frames": 8, "width": 48}, timeout=60)
    assert wide.headers["x-size"] == "48x32" and decode_bytes(wide.content).shape == (8, 32, 48, 3)
    gone = httpx.delete(f"{URL}{body['url']}", timeout=30)
    assert gone.json()["status"] == "deleted"
    assert httpx.get(f"{URL}{body['url']}", timeout=30).status_code == 404


def test_progress_is_reported_and_a_running_job_can_be_cancelled(served):
    r = httpx.post(f"{URL}/v1/videos", json={"prompt": PROMPT, "steps": 100}, timeout=30)
    url = r.json()["url"]
    deadline = time.monotonic() + 60
    while (job := httpx.get(URL + url, timeout=30).json())["progress"] < 0.05:
        assert time.monotonic() < deadline and job["status"] in ("queued", "running"), job
        time.sleep(0.05)
    assert job["status"] == "running" and 0 < job["progress"] < 1
    assert httpx.delete(URL + url, timeout=30).json()["status"] == "cancelled"
    job = _wait_job(url)
    assert job["status"] == "cancelled" and job["progress"] < 1
    content = httpx.get(f"{URL}{url}/content", timeout=30)
    assert content.status_code == 409 and "cancelled" in content.json()["detail"]


def test_a_full_queue_answers_503_with_retry_after(served):
    urls, refused = [], []
    for _ in range(10):  # a batch of up to 4 (the cpu profile's) runs, two wait, the rest are refused
        r = httpx.post(f"{URL}/v1/videos", json={"prompt": PROMPT, "steps": 60}, timeout=30)
        (urls if r.status_code == 202 else refused).append(r)
    assert len(urls) <= 4 + 2 and refused, [r.status_code for r in refused]
    assert all(r.status_code == 503 and int(r.headers["retry-after"]) >= 1 for r in refused)
    assert "queue is full" in refused[0].json()["detail"]
    for r in urls:
        httpx.delete(URL + r.json()["url"], timeout=30)


def test_bad_requests_get_a_4xx_that_says_what_to_change_in_one_body_shape(served):
    def post(route="/v1/videos", **kwargs):
        r = httpx.post(URL + route, timeout=30, **kwargs)
        body = r.json()
        assert set(body) == {"detail", "errors", "request_id"} and body["request_id"], body  # ErrorBody
        return r.status_code, body

    status, body = post(json={"prompt": PROMPT, "steps": 10_000})
    assert status == 422 and body["errors"][0]["loc"] == ["body", "steps"] and "steps" in body["detail"]
    status, body = post(json={"prompt": PROMPT, "colour": "red"})
    assert status == 422 and body["errors"][0]["loc"] == ["body", "colour"]
    assert (
        post(json={"prompt": "   "})[1]["detail"]
        == "prompt: Value error, the prompt is blank: describe the video"
    )
    status, body = post(json={"prompt": "x" * (MAX_PROMPT + 1)})  # serve.max_prompt_chars from params
    assert status == 422 and f"at most {MAX_PROMPT} characters" in body["detail"]
    status, body = post("/v1/generate", json={"prompt": PROMPT, "seed": "three", "guidance": 99})
    assert status == 422 and {tuple(e["loc"]) for e in body["errors"]} == {
        ("body", "seed"),
        ("body", "guidance"),
    }
    status, body = post(json={"prompt": PROMPT, "width": 40})  # a size the model was not trained at
    assert status == 422 and body["errors"][0]["loc"] == ["body", "width"]
    assert body["errors"][0]["msg"] == (
        "40x32x8 is not a shape this model was trained at; use one of 32x32x8, 48x32x8 "
        "(width x height x frames)"
    )
    status, body = post(json={"prompt": PROMPT, "width": 48, "num_frames": 16})  # a size, not its frames
    assert status == 422 and body["errors"][0]["loc"] == ["body", "num_frames"]
    assert body["errors"][0]["msg"].startswith("48x32x16 is not a shape this model was trained at")
    status, body = post(content=b'{"prompt": ', headers={"content-type": "application/json"})
    assert status == 422 and body["errors"][0]["type"] == "json_invalid"
    status, body = post(content=b"{" + b" " * 100_000 + b"}", headers={"content-type": "application/json"})
    assert status == 413 and "limit is 65536" in body["detail"]
    assert httpx.get(f"{URL}/v1/videos/nope", timeout=30).json()["detail"] == "no job nope"
    assert httpx.get(f"{URL}/nowhere", timeout=30).status_code == 404
    # the limits are in the request schema, from params
    prompt = httpx.get(f"{URL}/openapi.json", timeout=30).json()["components"]["schemas"]["GenerateRequest"]
    assert {"minLength": 1, "maxLength": MAX_PROMPT, "pattern": r"\S"}.items() <= prompt["properties"][
        "prompt"
    ].items()
    assert httpx.get(f"{URL}/healthz", timeout=30).status_code == 200  # and the server is fine


def test_the_api_keeps_its_openapi_contract(served):
    """Schemathesis: schema-valid and schema-invalid requests to every operation (bounded), with an API key
    configured (it also sends wrong ones); no 5xx, and every answer (status, content type, body) is one the
    OpenAPI document declares. A schema-valid width, height or frame count may still be refused (422): the
    shape must be one the served model was trained at, which the fixed schema cannot hold (its field says
    so)."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import positive_data_acceptance

    _, root, _ = served
    keys = root / ".serve" / "api_keys"
    key = add_key(keys, "contract")
    auth = {"authorization": f"Bearer {key}"}
    config = schemathesis.Config.from_dict({"auth": {"openapi": {"HTTPBearer": {"bearer": key}}}})
    schema = schemathesis.openapi.from_url(f"{URL}/openapi.json", config=config)
    failures = []
    try:
        for result in schema.get_all_operations():
            operation = result.ok()

            @settings(
                max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
            )
            @given(case=operation.as_strategy())
            def check(case):
                sized = isinstance(case.body, dict) and ({"width", "height"} & set(case.body))
                excluded = [positive_data_acceptance] if sized else []
                response = case.call_and_validate(timeout=60, excluded_checks=excluded)
                if response.status_code == 202:  # cancel it: a full queue's 503 is by design, not under test
                    httpx.delete(URL + response.json()["url"], headers=auth, timeout=30)

            try:
                check()
            # every operation is tried, and the failures reported together
            except (Exception, BaseExceptionGroup) as exc:
                failures.append(f"{operation.label}: {exc}")
    finally:
        keys.unlink()
    assert not failures, "\n\n".join(failures)


def test_metrics_request_ids_and_the_page(served):
    _, _, version = served
    r = httpx.get(f"{URL}/v1/model", headers={"x-request-id": "trace-123"}, timeout=30)
    assert r.headers["x-request-id"] == "trace-123"
    assert r.json()["sizes"] == [[32, 32], [48, 32]] and r.json()["resolution"] == [32, 32]
    assert r.json()["shapes"] == [[32, 32, 8], [48, 32, 8]]
    job = httpx.post(f"{URL}/v1/videos", json={"prompt": PROMPT}, timeout=30)
    rid = job.headers["x-request-id"]
    assert rid and _wait_job(job.json()["url"])["status"] == "succeeded"
    text = httpx.get(f"{URL}/metrics", timeout=30).text
    assert 'route="/v1/videos",status="202"' in text
    assert 'route="/v1/videos/{job_id}",status="200"' in text  # templated routes, not one series per id
    assert "reelforge_jobs{replica=" in text and 'state="succeeded"' in text
    assert f'version="{version}"' in text and "reelforge_generation_seconds_count" in text
    assert "reelforge_job_queue_depth" in text
    page = httpx.get(URL + "/", timeout=30)
    assert page.status_code == 200 and 'id="prompt"' in page.text and "static/page.js" in page.text
    assert "v1/videos" in httpx.get(f"{URL}/static/page.js", timeout=30).text
    assert httpx.get(f"{URL}/static/..%2Fjobs.py", timeout=30).status_code == 404


def _replicas() -> list[dict]:
    import ray

    ray.init(address=f"127.0.0.1:{RAY_PORT}", logging_level="ERROR", log_to_driver=False)
    try:
        return [a for a in ray.util.list_named_actors(all_namespaces=True) if "SERVE_REPLICA" in a["name"]]
    finally:
        ray.shutdown()


def test_a_job_survives_its_replica_being_killed(served):
    import ray

    r = httpx.post(f"{URL}/v1/videos", json={"prompt": PROMPT, "steps": 100}, timeout=30)
    url = r.json()["url"]
    _wait_job(url, until=("running",))
    [replica] = _replicas()
    ray.init(address=f"127.0.0.1:{RAY_PORT}", logging_level="ERROR", log_to_driver=False)
    try:
        ray.kill(ray.get_actor(replica["name"], namespace=replica["namespace"]))
    finally:
        ray.shutdown()
    job = _wait_job(url, timeout=240)  # Serve starts a new replica; it finds the job stale and re-runs it
    assert job["status"] == "succeeded" and job["attempts"] == 2, job


def test_queued_jobs_alone_make_serve_add_a_replica(served):
    """Autoscaling (serving.autoscale, as the gpu profile has it; here at most 2 replicas, 1 job each): jobs
    queued and running, with no HTTP request in flight, make Serve start a second replica."""
    cfg, root, _ = served
    scaling = {
        "min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 1, "upscale_delay_s": 0,
        "downscale_delay_s": 600, "metrics_interval_s": 0.5, "look_back_period_s": 2,
        "policy": {"policy_function": "serving.autoscale:job_queue_policy"},
    }  # fmt: skip
    deploy(cfg, root, profile_overrides={"autoscaling": scaling})
    urls = []
    try:
        assert len(_replicas()) == 1
        for seed in range(3):
            r = httpx.post(
                f"{URL}/v1/videos", json={"prompt": PROMPT, "seed": seed, "steps": 100}, timeout=30
            )
            urls.append(r.json()["url"])
        deadline = time.monotonic() + 120
        while len(_replicas()) < 2:
            assert time.monotonic() < deadline, "no second replica"
            time.sleep(1)
    finally:
        for url in urls:
            httpx.delete(URL + url, timeout=30)
        deploy(cfg, root)  # back to the cpu profile's single replica


def test_a_promotion_lets_the_running_job_finish_on_its_version(served):
    """Redeploy with another version while a job runs: the retired replica finishes it (attempts 1, on the
    old version) before it goes; the next job runs on the new version."""
    cfg, root, version = served
    r = httpx.post(f"{URL}/v1/videos", json={"prompt": PROMPT, "steps": 40}, timeout=30)
    url = r.json()["url"]
    _wait_job(url, until=("running",))
    MlflowClient().set_registered_model_alias(cfg.registry.model_name, cfg.registry.alias, "2")
    try:
        deploy(cfg, root)
        assert httpx.get(f"{URL}/v1/model", timeout=30).json()["version"] == "2"
        job = _wait_job(url)
        assert (job["status"], job["attempts"], job["model_version"]) == ("succeeded", 1, version), job
        after = httpx.post(f"{URL}/v1/videos", json={"prompt": PROMPT}, timeout=30).json()["url"]
        assert _wait_job(after)["model_version"] == "2"
    finally:
        MlflowClient().set_registered_model_alias(cfg.registry.model_name, cfg.registry.alias, version)
        deploy(cfg, root)


def test_api_keys_are_required_once_configured_and_revocable_live(served):
    _, root, _ = served
    keys = root / ".serve" / "api_keys"
    alice, bob = add_key(keys, "alice"), add_key(keys, "bob")
    try:
        no_key = httpx.post(f"{URL}/v1/videos", json={"prompt": ""}, timeout=30)
        assert no_key.status_code == 401 and no_key.headers["www-authenticate"] == "Bearer"  # before the 422
        wrong = httpx.get(f"{URL}/v1/model", headers={"authorization": "Bearer nope"}, timeout=30)
        assert wrong.status_code == 401 and "not valid" in wrong.json()["detail"]
        a = {"authorization": f"Bearer {alice}"}
        job = httpx.post(f"{URL}/v1/videos", json={"prompt": PROMPT}, headers=a, timeout=30).json()
        assert _wait_job(job["url"], headers=a)["status"] == "succeeded"
        b = {"authorization": f"Bearer {bob}"}
        assert httpx.get(URL + job["url"], headers=b, timeout=30).status_code == 404  # not bob's job
        assert httpx.get(f"{URL}/healthz", timeout=30).status_code == 200  # health stays open
        revoke_key(keys, "alice")
        assert httpx.get(f"{URL}/v1/model", headers=a, timeout=30).status_code == 401
        assert httpx.get(f"{URL}/v1/model", headers=b, timeout=30).status_code == 200
    finally:
        keys.unlink()


def test_the_page_makes_a_video_in_a_browser(served, tmp_path):
    """Headless Chromium (Debian's, driven by Playwright) types a prompt, picks one of the shapes the model
    was trained at, waits for the job, and checks that the <video> has decoded frames of that size."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is missing: `make test` installs it (apt-get install chromium)"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium)
        try:
            page = browser.new_page()
            page.goto(URL + "/")
            page.wait_for_function("document.getElementById('model').textContent.includes('v1')")
            page.fill("#prompt", PROMPT)
            assert page.eval_on_selector_all("#size option", "os => os.map(o => o.value)") == [
                "32x32x8",
                "48x32x8",
            ]
            page.select_option("#size", "48x32x8")
            page.click("#go")
            page.wait_for_function(
                "(() => { const v = document.getElementById('video'); return v && v.readyState >= 2; })()",
                timeout=120_000,
            )
            size = page.evaluate("(v => [v.videoWidth, v.videoHeight])(document.getElementById('video'))")
            status = page.text_content("#status")
            page.screenshot(path=tmp_path / "page.png")
        finally:
            browser.close()
    assert size == [48, 32] and status.startswith("done in") and "on v1" in status, (size, status)
    assert (tmp_path / "page.png").stat().st_size > 0
