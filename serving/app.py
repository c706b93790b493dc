"""Ray Serve application: a FastAPI ingress around `TextToVideoPipeline` (the inference path evaluation uses).

The deployment's `user_config` names the resolved model version (not just `@champion`), so what a replica
serves is explicit and a promotion is a config change. `reelforge serve deploy` (a new driver each time)
makes Serve start a replica with the new config and retire the old one once the new one is healthy:
requests keep being served across a promotion (the e2e test checks this under load). When Serve does call
`reconfigure` on a live replica, the new version is loaded beside the old and the reference swapped only
once it is ready.

No `from __future__ import annotations` here: FastAPI must see real types through Serve's class ingress.
"""

import threading
from typing import Literal

import torch
from fastapi import FastAPI, HTTPException
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from ray import serve

from reelforge.data.video import encode_gif, encode_mp4
from reelforge.model.pipeline import TextToVideoPipeline

api = FastAPI(title="reelforge", description="Text-to-video generation from the MLflow champion model.")

CONTENT_TYPES = {"mp4": "video/mp4", "gif": "image/gif"}


def _invalid(field: str, message: str) -> None:
    """A 422 whose body is FastAPI's validation-error shape: {"detail": [{"loc", "msg", "type"}]}.
    Defined above the deployment: Serve pickles the class when it is decorated, with the globals that exist
    then (one defined below it is a NameError in the replica)."""
    raise HTTPException(422, [{"loc": ["body", field], "msg": message, "type": "value_error"}])


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(description="What the video should show.")
    seed: int = Field(0, ge=0, le=2**31 - 1)
    num_frames: int | None = Field(None, description="Frames to generate (default: the model's).")
    steps: int | None = Field(None, description="Sampling steps (default: the model's).")
    guidance: float | None = Field(None, description="Classifier-free guidance scale (default: the model's).")
    format: Literal["mp4", "gif"] = "mp4"


@serve.deployment(name="generator")
@serve.ingress(api)
class Generator:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.pipeline = None
        self.model: dict = {}
        self.limits: dict = {}

    def reconfigure(self, config: dict) -> None:
        """config: tracking_uri, model_name, version, limits, torch_threads, device, autocast (see
        serving.deploy and serving/profiles.yaml)."""
        import mlflow

        from reelforge.registry.models import load_pipeline
        from reelforge.registry.tracking import version_metrics

        torch.set_num_threads(int(config.get("torch_threads", 1)))
        self.limits = config["limits"]
        if (
            self.model.get("version") == config["version"]
            and self.model.get("model_name") == config["model_name"]
        ):
            return
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
            "resolution": [new.model.cfg.height, new.model.cfg.width],
            "device": str(next(new.model.parameters()).device),
            "autocast": config.get("autocast"),
        }
        with self._lock:  # swap the reference only once the new model is ready
            self.pipeline, self.model = new, info

    @api.get("/healthz")
    def healthz(self) -> dict:
        if self.pipeline is None:
            raise HTTPException(503, "no model loaded yet")
        return {"status": "ok", "version": self.model["version"]}

    @api.get("/v1/model")
    def model_info(self) -> dict:
        return self.model

    @api.post("/v1/generate")
    def generate(self, req: GenerateRequest) -> Response:
        pipeline = self.pipeline
        num_frames = self._check(req, pipeline)
        video = pipeline.generate(
            [req.prompt], [req.seed], num_frames=num_frames, steps=req.steps, guidance=req.guidance
        )[0]  # (T, H, W, 3)
        data = encode_mp4(video, pipeline.fps) if req.format == "mp4" else encode_gif(video, pipeline.fps)
        return Response(
            data,
            media_type=CONTENT_TYPES[req.format],
            headers={"X-Model-Version": str(self.model["version"]), "X-Num-Frames": str(len(video))},
        )

    def _check(self, req: GenerateRequest, pipeline: TextToVideoPipeline | None) -> int:
        """Validate against the configured limits; a bad request is a 422 that says what to change, in the
        same body as FastAPI's own validation errors (the `HTTPValidationError` of the OpenAPI document)."""
        lim = self.limits
        if pipeline is None:
            raise HTTPException(503, "no model loaded yet")
        if not req.prompt.strip():
            _invalid("prompt", "prompt is empty")
        if len(req.prompt) > lim["max_prompt_chars"]:
            _invalid(
                "prompt", f"prompt has {len(req.prompt)} characters; the limit is {lim['max_prompt_chars']}"
            )
        num_frames = req.num_frames or pipeline.num_frames
        if not 2 <= num_frames <= lim["max_num_frames"]:
            _invalid("num_frames", f"num_frames must be between 2 and {lim['max_num_frames']}")
        if problem := pipeline.frames_problem(num_frames):
            _invalid("num_frames", problem)
        if req.steps is not None and not 1 <= req.steps <= lim["max_steps"]:
            _invalid("steps", f"steps must be between 1 and {lim['max_steps']}")
        if req.guidance is not None and not 1.0 <= req.guidance <= lim["max_guidance"]:
            _invalid("guidance", f"guidance must be between 1.0 and {lim['max_guidance']}")
        return num_frames


app = Generator.bind()
