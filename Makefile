# Two commands on a fresh clone: `make demo` and `make test`. Both set up .venv from requirements.lock first.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | sha256sum | cut -c1-12)
DEMO_VIDEOS ?= 32
PYTEST_ARGS ?=

.PHONY: setup demo demo-data test lint format clean stop bench-ingest bench-train

setup: $(STAMP)

$(STAMP):
	test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch==2.13.0 is the CPU wheel on these machines and the CUDA build on GPU nodes.
	$(BIN)/python -m pip install -q -c requirements.lock -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

demo-data: setup
	test -d data/raw || $(BIN)/reelforge demo-data data/raw --videos $(DEMO_VIDEOS) --held-out evaluation/prompts.txt

demo: demo-data
	$(BIN)/reelforge run
	$(BIN)/reelforge status

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: lint
	$(BIN)/pytest $(PYTEST_ARGS)

# Ingest throughput vs decode-only (a PyAV loop and `ffmpeg -f null`, which needs Debian's ffmpeg).
bench-ingest: setup
	command -v ffmpeg >/dev/null || (apt-get update -qq && apt-get install -y -qq --no-install-recommends ffmpeg)
	$(BIN)/python benchmarks/ingest.py --videos 100 --repeats 3 --rss-sizes 100 1000 --out reports/bench_ingest.json

# Lightning training step vs a plain PyTorch loop on the same model, batch and optimizer (and MFU).
bench-train: setup
	$(BIN)/python benchmarks/train_step.py --out reports/bench_train_step.json

stop: setup
	$(BIN)/reelforge serve stop

clean: stop
	rm -rf data models checkpoints reports mlflow.db mlartifacts .prefect .dvc/cache .dvc/tmp
