# Two commands do everything from a fresh clone: `make run` and `make test`.
# uv is used from PATH when present, otherwise installed into .tools/ (a local venv) first.
SHELL := /bin/bash
UV := $(or $(shell command -v uv 2>/dev/null),$(CURDIR)/.tools/bin/uv)
PORT ?= 8080
COMPAT_SDK_VERSIONS ?= 0.2.0 0.5.2
# Some machines set PYTHONDONTWRITEBYTECODE; then every process would recompile SQLAlchemy,
# FastAPI and friends from source (seconds per start). Compile once at install instead.
export UV_COMPILE_BYTECODE := 1
unexport PYTHONDONTWRITEBYTECODE

.PHONY: install run test lint typecheck unit compat bench bench-idle bench-soak clean browser

$(CURDIR)/.tools/bin/uv:
	python3 -m venv $(CURDIR)/.tools
	$(CURDIR)/.tools/bin/pip install --quiet uv

install: $(UV)
	$(UV) sync --frozen --all-packages --group dev

run: install
	$(UV) run --frozen noukai serve --data-dir .noukai --flows examples/flows --port $(PORT)

lint: install
	$(UV) run --frozen ruff check packages tests $(wildcard bench)
	$(UV) run --frozen ruff format --check packages tests $(wildcard bench)

typecheck: install
	$(UV) run --frozen mypy

# Coverage of what the test process runs itself (see pyproject.toml); below the floor fails.
COVERAGE_FLOOR ?= 85
unit: install
	$(UV) run --frozen pytest tests --ignore=tests/compat --durations=40 --cov --cov-report=term --cov-fail-under=$(COVERAGE_FLOOR)

# The published noukai-sdk is layered over the project env, one version per run, because two
# versions of one distribution cannot share an environment.
compat: install
	set -e; for v in $(COMPAT_SDK_VERSIONS); do \
	  echo "== published noukai-sdk $$v"; \
	  NOUKAI_COMPAT_SDK_VERSION=$$v $(UV) run --frozen --with "noukai-sdk==$$v" pytest tests/compat; \
	done

# The console's browser tests (tests/console) drive Debian's Chromium through Playwright; its own
# browser downloads are never used. Installed here with apt-get when missing (needs root or sudo).
CHROMIUM ?= /usr/bin/chromium
browser:
	@if [ -x "$(CHROMIUM)" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO=sudo; else \
	  echo "make browser: $(CHROMIUM) is missing and installing it needs root or sudo:" \
	       "run 'apt-get install chromium' as root" >&2; exit 1; fi; \
	$$SUDO apt-get update && $$SUDO apt-get install -y --no-install-recommends chromium \
	  || { echo "make browser: could not install Debian's chromium (see above)" >&2; exit 1; }; \
	[ -x "$(CHROMIUM)" ] || { echo "make browser: chromium installed but $(CHROMIUM) is missing" >&2; exit 1; }

test: lint typecheck browser unit compat

# LangGraph, the second target, lives in its own venv (bench/langgraph/.venv, pinned by its uv.lock).
bench: install
	$(UV) sync --frozen --project bench/langgraph
	$(UV) run --frozen --with py-spy python -m bench $(BENCH_ARGS)

# Scaled-out capacity, on this machine's PostgreSQL and Redis: idle streams per GB on one API
# process (`bench/idle.py`), and RSS growth under 50 streams for 600 s (`bench/soak.py`).
bench-idle: install
	$(UV) run --frozen python -m bench.idle $(BENCH_ARGS)

bench-soak: install
	$(UV) run --frozen python -m bench.soak $(BENCH_ARGS)

clean:
	rm -rf .venv .tools .noukai .pytest_cache .mypy_cache .ruff_cache
