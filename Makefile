# Chorus: the two set-up commands are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# On a machine without CUDA, pin torch to its CPU build (see constraints-cpu.txt).
HAS_CUDA := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1)
CONSTRAINTS := $(if $(HAS_CUDA),,-c constraints-cpu.txt)
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml constraints-cpu.txt Makefile | cksum | cut -d' ' -f1)

export PYTHONHASHSEED ?= 0
export MLFLOW_DISABLE_TELEMETRY ?= true
export RAY_AUTH_MODE ?= disabled
export TORCH_EXTENSIONS_DIR ?= $(CURDIR)/.cache/torch_extensions

.PHONY: install test test-fast demo bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# Idempotent: reinstalls only when pyproject.toml, the constraints or this file change.
$(STAMP): $(PY) pyproject.toml constraints-cpu.txt
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(CONSTRAINTS) -e '.[test]'
	$(PIP) install -q $(CONSTRAINTS) --no-deps 'spikingjelly==2.0.0'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

demo: install
	$(PY) -m chorus.cli demo

bench: install
	$(PY) bench/neurons.py

clean:
	rm -rf $(VENV) .cache build *.egg-info
