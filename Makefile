# Two commands: `make pretrain` (the main job) and `make test`. Each creates the project venv
# on first use. Override the interpreter with PYTHON=python3.11, pass script flags with ARGS="...".
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Pinned so CI and this machine take the wheels from the local disk; any torch >= 2.4 works.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1

.PHONY: venv pretrain test benchmark clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

pretrain: venv
	$(PY) scripts/run_pretrain.py $(ARGS)

test: venv
	$(PY) -m pytest -q -p no:cacheprovider tests $(ARGS)

benchmark: venv
	$(PY) benchmarks/throughput.py $(ARGS)

clean:
	rm -rf $(VENV) outputs .pytest_cache
