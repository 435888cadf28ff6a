# make run   - execute the numbered notebooks headlessly (papermill) with PARAMS
# make lint  - check the code and the notebooks with ruff (rules in pyproject.toml)
# make test  - run the test suite except the tests marked slow (PYTEST_ARGS replaces that selection)
# make test-slow - run the tests marked slow: the notebook series on the other parameter sets, processes, wheels
# make test-browser - run notebook 01 in JupyterLab in headless Chromium (needs /usr/bin/chromium)
# make lab   - JupyterLab at the repository root, opened on notebooks/
# make bench - run the speed and memory benchmarks
# make docs  - build the documentation site (guides and API reference) in strict mode into site/
# make models - retrain the shipped shapes models from their recipes and compare with lafam_utils/shapes/weights
#               (MODELS_ARGS=--ship replaces the shipped files and their manifest entries)
# The virtual environment .venv is (re)built when pyproject.toml or constraints.txt change.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PARAMS ?= notebooks/params/demo.yaml
PYTEST_ARGS ?= -m "not slow"
BENCH_ARGS ?=
MODELS_ARGS ?=

.PHONY: run lint test test-slow test-browser docs bench models lab clean-venv

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip<26"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev,docs]"
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m lafam_utils.notebook.runner --params $(PARAMS)

lint: $(STAMP)
	$(BIN)/ruff check .

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow

test-browser: $(STAMP)
	$(BIN)/python -m pytest tests_browser

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

models: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m lafam_utils.shapes.retrain $(MODELS_ARGS)

lab: $(STAMP)
	$(BIN)/jupyter lab --ServerApp.root_dir=. --LabApp.default_url=/lab/tree/notebooks

clean-venv:
	rm -rf $(VENV)
