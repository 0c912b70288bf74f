# `make demo` and `make test` work on a fresh machine: each creates .venv,
# installs the project into it, and runs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test test-unit bench soak install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[sandbox,test,bench]'
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

## The main job: a campaign on a local Ray with stand-in providers and injected faults.
demo: $(STAMP)
	$(BIN)/aicmo-gateway demo

## Every test: unit (no Ray), integration (one local Ray), end to end (ray start, CLI, ray job submit).
test: $(STAMP)
	$(BIN)/python -m pytest

## Every test that needs no Ray (unit, adapters against their stand-ins, the store, faults): about a minute.
## A test that uses a Ray cluster is marked ray, e2e or nodes (tests/conftest.py refuses one that is not).
test-unit: $(STAMP)
	$(BIN)/python -m pytest tests -m "not ray and not e2e and not nodes" -q

## Benchmarks: ratios against baselines measured in the same run; results in bench/results/.
bench: $(STAMP)
	$(BIN)/python -m bench

## The long soak: ten minutes at 80% of measured saturation; RSS of every gateway actor and p99 over time,
## plotted with the verdict in tests/faults/results/soak-<store>.png (MINUTES=2 make soak for a short one;
## STORE=postgresql make soak on a real PostgreSQL).
soak: $(STAMP)
	$(BIN)/python -m tests.faults.soak --minutes $(or $(MINUTES),10) --store $(or $(STORE),sqlite)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
