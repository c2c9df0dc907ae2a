# Two commands for a fresh clone:
#   make run    start the bot (DISCORD_TOKEN in the environment or in .env)
#   make test   run the whole test suite
# Each first sets up the virtualenv with scripts/bootstrap.py (created when missing; torch
# for this machine; the project with what the command needs; the bundled chat model) and
# skips that set-up when it is already done.
#
# Variables: VENV (default .venv), PYTHON (the interpreter that creates it, default
# python3), TORCH=auto|cpu|cuda|skip, TORCH_SPEC, TORCH_INDEX_URL (see the README),
# ARGS (passed to pytest by `make test`, e.g. ARGS="tests/unit -x").

PYTHON ?= python3
VENV ?= .venv
ARGS ?=

BOOTSTRAP = $(PYTHON) scripts/bootstrap.py --venv $(VENV)
PY = $(VENV)/bin/python
LINTED = bot tests migrations benchmarks scripts

.DEFAULT_GOAL := help
.PHONY: help run web test lint format clean

help:
	@echo "make run     set up $(VENV) if needed, then start the bot (needs DISCORD_TOKEN)"
	@echo "make web     set up $(VENV) with the web extra, then serve the web app (WEB_HOST:WEB_PORT)"
	@echo "make test    set up $(VENV) if needed, then run the whole test suite (ARGS=... for pytest)"
	@echo "make lint    ruff and mypy, as CI runs them"
	@echo "make format  ruff format and ruff check --fix"
	@echo "make clean   delete $(VENV)"
	@echo "Torch: TORCH=auto|cpu|cuda|skip, TORCH_SPEC, TORCH_INDEX_URL (README, Quick start)."

run:
	@$(BOOTSTRAP) run
	@$(PY) -m bot run

web:
	@$(BOOTSTRAP) web
	@$(PY) -m bot web

test:
	@$(BOOTSTRAP) test
	HF_HUB_OFFLINE=1 $(PY) -m pytest $(ARGS)

lint:
	@$(BOOTSTRAP) lint
	$(PY) -m ruff check --no-cache $(LINTED)
	$(PY) -m ruff format --no-cache --check $(LINTED)
	$(PY) -m mypy
	$(PY) -m mypy scripts/bootstrap.py

format:
	@$(BOOTSTRAP) lint
	$(PY) -m ruff format $(LINTED)
	$(PY) -m ruff check --fix $(LINTED)

clean:
	rm -rf $(VENV)
