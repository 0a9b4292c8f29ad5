# Targets match the README's quick start. Each creates .venv on first use and is idempotent.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo check-demo test lint format bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The main job on the embedded corpus: prepare it (once), train the "tiny" preset (resuming if
# a run is there), then sample from the last checkpoint.
DEMO := runs/demo
demo: $(STAMP)
	test -f $(DEMO)/data/report.json || $(PY) -m tinygradlm prepare --out $(DEMO)/data
	$(PY) -m tinygradlm train --config tiny data_dir=$(DEMO)/data out_dir=$(DEMO)/train
	$(PY) -m tinygradlm sample --ckpt $(DEMO)/train \
		--prompt "The" --max-new-tokens 120 --temperature 0.8 --top-k 40

check-demo: $(STAMP)
	$(PY) -m tinygradlm check-demo

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: $(STAMP)
	$(PY) bench/autograd_overhead.py
	$(PY) bench/kernels.py
	$(PY) bench/step.py
	$(PY) bench/loader.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
