# The two commands: `make demo` sets up and runs the main job; `make test` sets up and runs the checks.
SHELL := /bin/bash
VENV ?= .venv
BIN := $(VENV)/bin
TASKS ?= 5

.PHONY: setup demo test lint typecheck imports pytest bench

setup:
	@scripts/setup.sh

demo: setup
	$(BIN)/aimesh run --count $(TASKS)

test: setup lint typecheck imports pytest

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck:
	$(BIN)/mypy

imports:
	$(BIN)/lint-imports

pytest:
	$(BIN)/pytest -q

bench: setup
	$(BIN)/python -m benchmarks.run_all
