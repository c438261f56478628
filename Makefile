# The two commands: `make demo` sets up and runs the main job; `make test` sets up and runs the checks.
# `make notebook` sets up and opens notebooks/ in JupyterLab, on this venv's kernel.
SHELL := /bin/bash
VENV ?= .venv
BIN := $(VENV)/bin
TASKS ?= 5

.PHONY: setup demo notebook test lint typecheck imports docker-engine pytest bench

setup:
	@scripts/setup.sh

demo: setup
	$(BIN)/aimesh run --count $(TASKS)

# jupyter refuses to start as root (a container, a CI machine) without --allow-root
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)

notebook: setup
	$(BIN)/jupyter lab notebooks/ $(ALLOW_ROOT)

test: setup lint typecheck imports pytest

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck:
	$(BIN)/mypy

imports:
	$(BIN)/lint-imports

# the docker sandbox tests need an engine: start dockerd where we can (root), else they skip and say why
docker-engine:
	@AIMESH_VENV=$(VENV) scripts/start_docker.sh

pytest: docker-engine
	$(BIN)/pytest -q

bench: setup
	$(BIN)/python -m benchmarks.run_all
