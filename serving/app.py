"""Ray Serve application: a FastAPI ingress around `TextToVideoPipeline` (the inference path evaluation uses).

The deployment's `user_config` names the resolved model version (not just `@champion`), so what a replica
serves is explicit and a promotion is a config change. `reelforge serve deploy` (a new driver each time)
makes Serve start a replica with the new config and retire the old one once the new one is healthy:
requests keep being served across a promotion (the e2e test checks this under load). When Serve does call
`reconfigure` on a live replica, the new version is loaded beside the old and the reference swapped only
once it is ready.

Jobs (`POST /v1/videos`) live in a table every replica shares (`serving.jobs`); each replica runs one
thread (`serving.worker`) that claims and generates them. docs/serving.md has the API and the guarantees.

No `from __future__ import annotations` here: FastAPI must see real types through Serve's class ingress.
"""

import asyncio
import json
import logging
import os
import threading
import time
from importlib import resources
from typing import Annotated, Literal

import torch
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, field_validator
from ray import serve
from starlette.exceptions import HTTPException as StarletteHTTPException

from reelforge.config import ServeParams
from reelforge.data.video import encode_gif, encode_mp4
from reelforge.model.pipeline import TextToVideoPipeline
from serving import auth, jobs, metrics, worker

LIMITS_ENV = "REELFORGE_SERVE_LIMITS"
LIMIT_KEYS = ("max_prompt_chars", "max_num_frames", "max_steps", "max_guidance")


def _limits() -> dict:
    """The request limits, params serve.max_*. They are part of the request schema, which is fixed when this
    module is imported: `serving.deploy` puts them in REELFORGE_SERVE_LIMITS for its own import and the
    replicas'. Without it, ServeParams' defaults."""
    return ServeParams().model_dump(include=set(LIMIT_KEYS)) | json.loads(os.environ.get(LIMITS_ENV) or "{}")


LIMITS = _limits()
MAX_BODY_BYTES = 64 * 1024  # a request body is a prompt and a few numbers


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(
        min_length=1,
        max_length=LIMITS["max_prompt_chars"],
        json_schema_extra={"pattern": r"\S"},  # not blank; the validator below says so in words
        description="What the video should show.",
    )
    seed: int = Field(0, ge=0, le=2**31 - 1)
    num_frames: int | None = Field(
        None, ge=2, le=LIMITS["max_num_frames"],
        description="Frames to generate (default: what the model trained at this width x height).",
    )  # fmt: skip
    width: int | None = Field(
        None, ge=8, le=4096,
        description="Width in pixels (default: the model's); width x height x num_frames must be a shape "
        "the model was trained at (GET /v1/model lists them as `shapes`).",
    )  # fmt: skip
    height: int | None = Field(None, ge=8, le=4096, description="Height in pixels (default: the model's).")
    steps: int | None = Field(
        None, ge=1, le=LIMITS["max_steps"], description="Sampling steps (default: the model's)."
    )
    guidance: float | None = Field(
        None, ge=1.0, le=LIMITS["max_guidance"],
        description="Classifier-free guidance scale (default: the model's).",
    )  # fmt: skip
    format: Literal["mp4", "gif"] = "mp4"

    @field_validator("prompt")
    @classmethod
    def _not_blank(cls, prompt: str) -> str:
        if not prompt.strip():
            raise ValueError("the prompt is blank: describe the video")
        return prompt


class JobAccepted(BaseModel):
    id: str
    status: Literal["queued"]
    url: str


class JobStatus(BaseModel):
    id: str
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    progress: float = Field(ge=0, le=1, description="Share of the sampling steps done.")
    model_version: str | None = Field(description="The version that made (or is making) the video.")
    attempts: int
    created_at: float
    started_at: float | None
    finished_at: float | None
    timings: dict[str, float] = Field(description="queued_s, running_s (seconds)")
    error: str | None
    request: dict


class Deleted(BaseModel):
    id: str
    status: Literal["cancelled", "deleted"]


class FieldError(BaseModel):
    loc: list[str | int] = Field(description='Where: ["body", "steps"], ["path", "job_id"], ...')
    msg: str
    type: str


class ErrorBody(BaseModel):
    """The body of every error answer."""

    detail: str = Field(description="What is wrong, and what to change.")
    errors: list[FieldError] = Field(
        default_factory=list, description="422: each invalid part of the request."
    )
    request_id: str | None = Field(None, description="The request's X-Request-ID.")


def _errors(*codes: int) -> dict:
    """OpenAPI `responses` for the error answers a route gives, all with the ErrorBody."""
    return {code: {"model": ErrorBody, "description": ERROR_CODES[code]} for code in codes}


ERROR_CODES = {
    401: "No API key, or an unknown or revoked one (keys are configured).",
    404: "No such job (or another key's).",
    409: "The job has not succeeded.",
    413: "The body is larger than 64 KiB.",
    422: "The request is invalid; `errors` names each field.",
    429: "Over the rate limit; see Retry-After.",
    503: "No model loaded yet, or the queue is full; see Retry-After.",
}
KEYED = (401, 422)
GENERATE = (*KEYED, 413, 429, 503)


api = FastAPI(title="reelforge", description="Text-to-video generation from the MLflow champion model.")
access_log = logging.getLogger("reelforge.access")
log = logging.getLogger("reelforge.serving")

CONTENT_TYPES = {"mp4": "video/mp4", "gif": "image/gif"}
bearer = HTTPBearer(auto_error=False, description="An API key (`reelforge serve key add NAME`).")


def api_key(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> str | None:
    """The caller's key name (None on an open endpoint). A dependency, so a 401 comes before any 422."""
    try:
        return auth.RING.check(credentials.credentials if credentials else None)
    except auth.AuthError as exc:
        raise HTTPException(401, str(exc), headers={"WWW-Authenticate": "Bearer"}) from None


Owner = Annotated[str | None, Depends(api_key)]


@api.middleware("http")
async def _count_and_log(request: Request, call_next):  # noqa: ANN202
    """Requests by route and status (/metrics) and one access line each, with Serve's request id (the
    proxy sets `x-request-id` from the client's header or a new one, and returns it as X-Request-ID)."""
    t0 = time.perf_counter()
    status = 500
    try:
        if too_big := _body_problem(request):
            response = _error(request, *too_big)
        else:
            response = await call_next(request)
        status = response.status_code
        return response
    finally:
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        metrics.METRICS.request(path, request.method, status)
        access_log.info(
            "%s %s %d %.1fms request_id=%s", request.method, request.url.path, status,
            (time.perf_counter() - t0) * 1e3, request.headers.get("x-request-id", "-"),
        )  # fmt: skip


def _body_problem(request: Request) -> tuple[int, str] | None:
    """Refuse a body over MAX_BODY_BYTES before reading it; a body of unknown length (chunked) could be."""
    size = request.headers.get("content-length")
    if size is None:
        if "chunked" in request.headers.get("transfer-encoding", ""):
            return 411, "send the body with a Content-Length"
        return None
    if not size.isdigit():
        return 400, f"Content-Length {size!r} is not a number"
    if int(size) > MAX_BODY_BYTES:
        return 413, f"the body has {size} bytes; the limit is {MAX_BODY_BYTES}"
    return None


def _invalid(field: str, message: str) -> None:
    """A 422 for a field whose limit depends on the served model (the schema holds the fixed ones).
    Defined above the deployment: Serve pickles the class when it is decorated, with the globals that exist
    then (one defined below it is a NameError in the replica)."""
    raise RequestValidationError([{"loc": ("body", field), "msg": message, "type": "value_error"}])


def _error(
    request: Request, status: int, detail: str, errors: list | None = None, headers: dict | None = None
) -> JSONResponse:
    body = ErrorBody(detail=detail, errors=errors or [], request_id=request.headers.get("x-request-id"))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


@api.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return _error(request, exc.status_code, str(exc.detail), headers=exc.headers)


@api.exception_handler(RequestValidationError)
async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [FieldError(loc=list(e["loc"]), msg=e["msg"], type=e["type"]) for e in exc.errors()]
    where = [".".join(str(p) for p in e.loc[1:]) if len(e.loc) > 1 and e.type != "json_invalid" else e.loc[0]
             for e in errors]  # fmt: skip
    return _error(
        request, 422, "; ".join(f"{w}: {e.msg}" for w, e in zip(where, errors, strict=True)), errors
    )


@api.exception_handler(Exception)
async def _server_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return _error(request, 500, f"internal error ({type(exc).__name__}); the server log has the trace")


def _encode(video, fps: float, fmt: str) -> bytes:  # noqa: ANN001
    return encode_mp4(video, fps) if fmt == "mp4" else encode_gif(video, fps)


def _batch_key(request: dict) -> str:
    """Requests that can share one call of the model: the same shape, steps and guidance."""
    return json.dumps([request.get(k) for k in ("num_frames", "width", "height", "steps", "guidance")])


@serve.deployment(name="generator")
@serve.ingress(api)
class Generator:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.pipeline = None
        self.model: dict = {}
        self.store: jobs.JobStore | None = None
        self.runner: worker.JobRunner | None = None
        self.rate = auth.RateLimiter(0)
        self.jobs_config: dict = {}
        self.job_seconds = 5.0  # running mean of a job's generation time, for Retry-After
        try:
            self.name = serve.get_replica_context().replica_id.unique_id
        except Exception:  # outside a Serve replica (a unit test)
            self.name = f"local-{id(self)}"
        metrics.METRICS.replica = self.name

    def reconfigure(self, config: dict) -> None:
        """config: tracking_uri, model_name, version, torch_threads, device, autocast, jobs,
        api_keys_file, rate_limit_per_minute (see serving.deploy and serving/profiles.yaml)."""
        import mlflow

        from reelforge.registry.models import load_pipeline
        from reelforge.registry.tracking import version_metrics

        torch.set_num_threads(int(config.get("torch_threads", 1)))
        auth.RING = auth.KeyRing(config.get("api_keys_file"))
        self.rate = auth.RateLimiter(int(config.get("rate_limit_per_minute", 0)))
        if (
            self.model.get("version") != config["version"]
            or self.model.get("model_name") != config["model_name"]
        ):
            mlflow.set_tracking_uri(config["tracking_uri"])
            mlflow.set_registry_uri(config["tracking_uri"])
            new = load_pipeline(config["model_name"], config["version"])  # beside the old one
            autocast = getattr(torch, config["autocast"]) if config.get("autocast") else None
            new.to(config.get("device", "cpu"), autocast=autocast)
            info = {
                "model_name": config["model_name"],
                "version": config["version"],
                "alias": config.get("alias"),
                "metrics": version_metrics(config["model_name"], config["version"]),
                "num_frames": new.num_frames,
                "fps": new.fps,
                "resolution": [new.height, new.width],  # the default
                "sizes": [list(s) for s in new.sizes],  # (width, height) it may generate at
                "shapes": [list(s) for s in new.shapes],  # (width, height, frames): what it trained at
                "device": str(next(new.model.parameters()).device),
                "autocast": config.get("autocast"),
            }
            with self._lock:  # swap the reference only once the new model is ready
                self.pipeline, self.model = new, info
            metrics.METRICS.serving(info["model_name"], info["version"])
        j = config["jobs"]
        if self.store is None or self.jobs_config.get("url") != j["url"]:  # (str(engine.url) masks passwords)
            if self.runner is not None:
                self.runner.stop(j["graceful_s"])
            self.store = jobs.JobStore(j["url"], j["results_dir"], j["result_ttl_s"], j["stale_s"])
            self.runner = worker.JobRunner(
                self.store, self._run_jobs, lambda: str(self.model["version"]), self.name
            ).start()
        self.jobs_config = j
        batching = config["batching"]
        self.runner.max_batch = batching["max_batch_size"]
        self._generate_batched.set_max_batch_size(batching["max_batch_size"])
        self._generate_batched.set_batch_wait_timeout_s(batching["batch_wait_timeout_s"])

    def __del__(self) -> None:
        """Serve calls this when it retires the replica (a promotion, a scale-down): claim no more jobs and
        let the one in hand finish on this replica's version."""
        if self.runner is not None:
            self.runner.stop(self.jobs_config.get("graceful_s", 30))

    def record_autoscaling_stats(self) -> dict[str, float]:
        """Custom autoscaling metrics (serving.autoscale): the job queue and this replica's running jobs."""
        queued = self.store.counts()["queued"] if self.store else 0
        return {"jobs_queued": queued, "jobs_running": len(self.runner.current) if self.runner else 0}

    # --- open routes ---------------------------------------------------------------------------------
    @api.get("/", include_in_schema=False)
    def page(self) -> FileResponse:
        return FileResponse(resources.files("serving") / "static" / "index.html")

    @api.get("/static/{name}", include_in_schema=False)
    def static(self, name: str) -> FileResponse:
        path = resources.files("serving") / "static" / name
        if "/" in name or name.startswith(".") or not path.is_file():
            raise HTTPException(404, f"no static file {name!r}")
        return FileResponse(path)

    @api.get("/healthz", responses=_errors(503))
    def healthz(self) -> dict:
        if self.pipeline is None:
            raise HTTPException(503, "no model loaded yet")
        return {"status": "ok", "version": self.model["version"]}

    @api.get("/metrics", include_in_schema=False)
    def prometheus(self) -> Response:
        counts = self.store.counts() if self.store else {}
        return Response(metrics.METRICS.render(counts), media_type="text/plain; version=0.0.4")

    # --- keyed routes --------------------------------------------------------------------------------
    @api.get("/v1/model", responses=_errors(401))
    def model_info(self, owner: Owner) -> dict:
        return self.model

    @api.post(
        "/v1/generate",
        response_class=Response,
        responses={200: {"content": {t: {} for t in CONTENT_TYPES.values()}, "description": "The video."}}
        | _errors(*GENERATE),
    )
    async def generate(self, req: GenerateRequest, request: Request, owner: Owner) -> Response:
        """Generate synchronously: for short requests. Long ones belong in POST /v1/videos. Concurrent
        compatible requests are sampled together (`serve.batch`, sized by the profile)."""
        self._admit(owner, request)
        body = req.model_dump() | self._check(req, self.pipeline)
        data, version = await self._generate_batched(body)
        return Response(
            data,
            media_type=CONTENT_TYPES[req.format],
            headers={
                "X-Model-Version": str(version),
                "X-Num-Frames": str(body["num_frames"]),
                "X-Size": f"{body['width']}x{body['height']}",
            },
        )

    @serve.batch(max_batch_size=1, batch_wait_timeout_s=0.0)  # sized in reconfigure, from the profile
    async def _generate_batched(self, requests: list[dict]) -> list[tuple[bytes, str]]:
        version = str(self.model["version"])
        results = await asyncio.to_thread(self._sample, requests, None, "sync")
        return [(data, version) for data, _ in results]

    @api.post("/v1/videos", status_code=202, response_model=JobAccepted, responses=_errors(*GENERATE))
    def submit(self, req: GenerateRequest, request: Request, owner: Owner) -> JSONResponse:
        """Queue a generation job: 202 with its id and a Location to poll. 503 with Retry-After when the
        queue is full."""
        self._admit(owner, request)
        body = req.model_dump() | self._check(req, self.pipeline)
        try:
            job = self.store.submit(
                body, owner, request.headers.get("x-request-id"), self.jobs_config["max_queued"],
                batch_key=_batch_key(body),
            )  # fmt: skip
        except jobs.QueueFull as full:
            wait = max(1, round(full.queued * self.job_seconds))
            raise HTTPException(
                503, f"the job queue is full ({full.queued} queued); retry later",
                headers={"Retry-After": str(wait)},
            ) from None  # fmt: skip
        self.runner.wake()
        url = f"/v1/videos/{job.id}"
        return JSONResponse(
            {"id": job.id, "status": "queued", "url": url}, status_code=202, headers={"Location": url}
        )

    @api.get("/v1/videos/{job_id}", response_model=JobStatus, responses=_errors(*KEYED, 404))
    def job(self, job_id: str, owner: Owner) -> dict:
        """status: queued | running | succeeded | failed | cancelled; progress 0-1 (per sampling step)."""
        return self._job(job_id, owner).public()

    @api.get(
        "/v1/videos/{job_id}/content",
        response_class=FileResponse,
        responses={200: {"content": {t: {} for t in CONTENT_TYPES.values()}, "description": "The video."}}
        | _errors(*KEYED, 404, 409),
    )
    def content(self, job_id: str, owner: Owner) -> FileResponse:
        job = self._job(job_id, owner)
        if job.status != "succeeded":
            raise HTTPException(409, f"job {job_id} is {job.status}; the video exists once it succeeded")
        fmt = job.request["format"]
        return FileResponse(
            job.result, media_type=CONTENT_TYPES[fmt], headers={"X-Model-Version": str(job.model_version)}
        )

    @api.delete("/v1/videos/{job_id}", response_model=Deleted, responses=_errors(*KEYED, 404))
    def delete(self, job_id: str, owner: Owner) -> dict:
        """Cancel a queued or running job; delete a finished one and its video."""
        job = self._job(job_id, owner)
        self.store.cancel(job.id)
        done = job.status in jobs.FINISHED
        return {"id": job.id, "status": "deleted" if done else "cancelled"}

    # --- helpers -------------------------------------------------------------------------------------
    def _admit(self, owner: str | None, request: Request) -> None:
        """The per-key rate limit on generation requests: 429 with Retry-After past it."""
        client = owner or (request.client.host if request.client else "unknown")
        wait = self.rate.acquire(client)
        if wait:
            raise HTTPException(
                429, "rate limit exceeded for this key", headers={"Retry-After": str(max(1, round(wait)))}
            )

    def _job(self, job_id: str, owner: str | None) -> jobs.Job:
        job = self.store.get(job_id)
        if job is None or job.owner != owner:  # another key's job does not exist for this one
            raise HTTPException(404, f"no job {job_id}")
        return job

    def _run_jobs(self, requests: list[dict], report) -> list[tuple[bytes, str]]:  # noqa: ANN001
        return self._sample(requests, report, "job")

    def _sample(self, requests: list[dict], report, mode: str) -> list[tuple[bytes, str]]:  # noqa: ANN001
        """Generate and encode requests, one call of the model per group of compatible ones; results in
        the order of `requests`. `report(fraction)` after each sampling step of each group."""
        pipeline = self.pipeline
        groups: dict[str, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault(_batch_key(r), []).append(i)
        out: list = [None] * len(requests)
        for g, members in enumerate(groups.values()):
            first = requests[members[0]]
            t0 = time.perf_counter()

            def progress(done: int, total: int, g: int = g) -> None:
                if report is not None:
                    report((g + done / total) / len(groups))

            videos = pipeline.generate(
                [requests[i]["prompt"] for i in members], [requests[i]["seed"] for i in members],
                num_frames=first["num_frames"], steps=first["steps"], guidance=first["guidance"],
                callback=progress, width=first.get("width"), height=first.get("height"),  # older jobs: none
            )  # fmt: skip
            for i, video in zip(members, videos, strict=True):
                out[i] = (_encode(video, pipeline.fps, requests[i]["format"]), requests[i]["format"])
            seconds = time.perf_counter() - t0
            metrics.METRICS.generated(mode, seconds, len(members))
            if mode == "job":
                self.job_seconds = 0.8 * self.job_seconds + 0.2 * seconds / len(members)
        return out

    def _check(self, req: GenerateRequest, pipeline: TextToVideoPipeline | None) -> dict:
        """The frame count and size to generate. The schema holds the fixed limits; what depends on the
        served model (the shapes it was trained at, its clips' buckets) is a 422 here, in the same ErrorBody,
        naming the field: the size when it was not trained, else the frame count."""
        if pipeline is None:
            raise HTTPException(503, "no model loaded yet")
        num_frames, width, height = pipeline.resolve(req.num_frames, req.width, req.height)
        if problem := pipeline.shape_problem(num_frames, width, height):
            size_trained = (width, height) in pipeline.sizes
            _invalid("num_frames" if size_trained else "width" if req.width else "height", problem)
        return {"num_frames": num_frames, "width": width, "height": height}


app = Generator.bind()
