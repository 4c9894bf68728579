# Loa: `make demo` runs everything on this machine; `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# command:debian-package pairs the project needs on the machine.
SYSTEM_DEPS := mosquitto:mosquitto ffmpeg:ffmpeg ffprobe:ffmpeg espeak-ng:espeak-ng aplay:alsa-utils chromium:chromium
PYTEST_ARGS ?=

.PHONY: help setup sysdeps demo test lint format bench clean

help:
	@echo "make demo   - install what is missing, then run server, broker and 12 simulated clusters and an e-board"
	@echo "make test   - install what is missing, then run the whole test suite"
	@echo "make lint   - ruff (check + format check) and mypy strict on all six packages"
	@echo "make bench  - run every benchmark in bench/ (one JSON line each)"

setup: sysdeps $(STAMP)

# Install missing Debian packages with apt-get when we are root or have sudo;
# otherwise stop with the one command the user has to run.
sysdeps:
	@missing=""; \
	for pair in $(SYSTEM_DEPS); do \
	  cmd=$${pair%%:*}; pkg=$${pair##*:}; \
	  if ! command -v $$cmd >/dev/null 2>&1 && [ ! -x /usr/sbin/$$cmd ]; then \
	    case " $$missing " in *" $$pkg "*) ;; *) missing="$$missing $$pkg";; esac; \
	  fi; \
	done; \
	if ! $(PYTHON) -c 'import ensurepip, venv' >/dev/null 2>&1; then missing="$$missing python3-venv"; fi; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; \
	  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo"; \
	  else echo "Missing system packages:$$missing. Run: sudo apt-get install -y$$missing"; exit 1; fi; \
	  echo "Installing system packages:$$missing"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[server,edge,dev]'
	@touch $(STAMP)

demo: setup
	$(BIN)/loa-server demo

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy protocol schedules audio firmware_profiles server edge_agent

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: setup
	@for script in bench/[!_]*.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
