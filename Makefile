# latentlab. `make help` lists the targets. The first target that needs Python creates .venv and
# installs the locked requirements (once; again only when requirements.lock or pyproject.toml change).

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP_ARGS ?=

NAME ?= face_attributes/synthetic
ARGS ?=
RESUME ?=
DATASET ?=
TABLE ?=
SEEDS ?= 1 2 3 4 5
JOBS ?= 1
METHOD ?=
MARKERS := not slow and not gpu and not needs_weights
PYTEST_ARGS ?=

CONFIGS = --config experiments/_base.yaml --config experiments/$(NAME).yaml
RESUME_FLAG = $(if $(filter 1 true yes,$(RESUME)),--run.resume=true)
DATA_FLAGS = $(if $(ROOT),--root $(ROOT)) $(if $(RES),--res $(RES)) $(if $(OUT),--out $(OUT)) \
	$(if $(filter 1 true yes,$(DOWNLOAD)),--download)

.DEFAULT_GOAL := help
.PHONY: help list install experiment smoke table report test test-all lint format data weights bench bench-gpu clean check-name

help: ## Show this help
	@echo "Usage: make <target> [NAME=<method>/<dataset>[_<variant>]] [ARGS=\"--trainer.max_epochs=1\"] [RESUME=1]"
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-11s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "NAME is experiments/<NAME>.yaml; make list lists every experiment"

list: install ## List every experiment (NAME=<method>/<name>) with its header's first sentence
	@$(PY) -m experiments.listing

install: $(VENV)/.installed ## Create .venv and install requirements.lock + this repo (editable)

$(VENV)/.installed: requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(PIP_ARGS) -r requirements.lock
	$(PY) -m pip install $(PIP_ARGS) --no-deps -e .
	@touch $@

check-name:
	@$(PY) -m experiments.listing --check "$(NAME)"

experiment: install check-name ## Fit, test, predict NAME (default face_attributes/synthetic) into runs/NAME/<time>/
	$(PY) -m experiments run $(CONFIGS) $(RESUME_FLAG) $(ARGS)

smoke: install check-name ## One batch of fit, val, test and predict of NAME, no logs or checkpoints (a pipeline: every step chained in a temporary folder)
	$(PY) -m experiments run $(CONFIGS) --trainer.fast_dev_run=true --trainer.logger=false $(ARGS)

table: install ## Run TABLE=<method>/<table> over SEEDS (resumable; JOBS= ARGS= overrides) and write runs/<method>/tables/<table>.md
	@test -n "$(TABLE)" || { echo "Set TABLE, e.g. TABLE=mil_lstm/table71 (experiments/<TABLE>.py)"; exit 2; }
	$(PY) -m experiments.tables run $(TABLE) --seeds $(SEEDS) --jobs $(JOBS) -- $(ARGS)

SWEEP_FLAGS = $(if $(filter 1 true yes,$(LOCAL)),--local) $(if $(COUNT),--count $(COUNT)) \
	$(if $(SEARCH),--method $(SEARCH))
.PHONY: sweep
sweep: install ## Sweep NAME=<experiments/sweeps/NAME.yaml> via W&B, or run by run with LOCAL=1 or offline [COUNT= SEARCH=random ARGS=]
	@test -n "$(filter command environment,$(origin NAME))" || { echo "Set NAME to a sweep: $$(cd experiments/sweeps && ls *.yaml | sed 's/\.yaml$$//' | tr '\n' ' ')"; exit 2; }
	$(PY) -m experiments.sweep $(NAME) $(SWEEP_FLAGS) -- $(ARGS)

report: install ## Copy runs/<METHOD>/tables/*.md (written by make table) into docs/results/<METHOD>.md
	@test -n "$(METHOD)" || { echo "Set METHOD, e.g. METHOD=mil_lstm"; exit 2; }
	$(PY) -m experiments.tables report $(METHOD)

test: install ## Fast CPU tests (not slow, gpu or needs_weights); the README's test command
	@$(PY) -m pytest -m "$(MARKERS)" $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests: failing"; fi; exit $$rc

test-all: install ## Every test, slow ones included (gpu tests skip without CUDA)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install ## ruff check + ruff format --check
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: install ## Fix what ruff can and format the code
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

data: install ## Prepare DATASET=celeba|ffhq|mnist|cub|viton|synthetic-{faces,mnist,birds,viton,exemplar-faces,an8flower} [ROOT= RES= OUT= DOWNLOAD=1 ARGS=]
	@test -n "$(DATASET)" || { echo "Set DATASET (see: $(PY) -m datamodules.prepare --help)"; exit 2; }
	$(PY) -m datamodules.prepare $(DATASET) $(DATA_FLAGS) $(ARGS)

WEIGHTS_FLAGS = $(if $(WEIGHTS_DIR),--weights-dir $(WEIGHTS_DIR)) \
	$(if $(filter 1 true yes,$(DOWNLOAD)),--download) $(NAMES)

weights: install ## Table of pretrained files: present, verified, size, needed by (offline) [WEIGHTS_DIR= DOWNLOAD=1 NAMES=]
	$(PY) -m experiments.weights $(WEIGHTS_FLAGS)

bench: install ## Run every benchmarks/bench_*.py (ratios against in-run baselines)
	@shopt -s nullglob; files=(benchmarks/bench_*.py); \
	if [ $${#files[@]} -eq 0 ]; then echo "No benchmarks/bench_*.py"; exit 1; fi; \
	for f in "$${files[@]}"; do m=$${f%.py}; echo "== $$f"; $(PY) -m $${m//\//.} || exit $$?; done

bench-gpu: install ## Every GPU measurement in one call (<= 8 min): runs/bench_gpu/gpu_bench.md [ARGS=]
	$(PY) -m benchmarks.gpu $(ARGS)

clean: ## Remove caches and build files (keeps .venv, runs/ and data/)
	rm -rf .pytest_cache .ruff_cache build *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
