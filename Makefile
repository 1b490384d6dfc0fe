# Two commands do everything: `make demo` and `make test`. `make up` opens the Airflow UI on the same stack.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export PYTHONPATH := $(CURDIR)

.PHONY: venv demo test test-unit test-integration e2e-celery bench bench-quick bench-watch bench-tools up lock clean

$(STAMP): requirements.txt requirements-dev.txt constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt -c constraints.txt
	touch $(STAMP)

venv: $(STAMP)

## Start the local stack (moto, simulated fleet, SMTP sink), run the daily audit once, show the results.
demo: $(STAMP)
	$(BIN)/python -m devstack.run.demo

## Unit, DAG-integrity and integration tests (real moto server, SSH fleet, sshd where available, SMTP), in a
## random order (pytest-randomly prints the seed; replay it with `$(BIN)/pytest -p randomly --randomly-seed=N tests`).
test: $(STAMP)
	$(BIN)/pytest -p randomly --durations=15 tests

## Unit tests: the packages' (tests/unit) and the local stack modules' (tests/devstack).
test-unit: $(STAMP)
	$(BIN)/pytest tests/unit tests/devstack

test-integration: $(STAMP)
	$(BIN)/pytest tests/integration

## CeleryExecutor on real PostgreSQL + Redis (apt), two workers, one SIGKILLed mid-run (root; ~3 min).
e2e-celery: $(STAMP)
	$(BIN)/python -m devstack.run.celery_e2e

## SSH fan-out side by side on one simulated fleet + this DAG end to end (docs/PERFORMANCE.md). `make bench`:
## every method at 100/1,000/10,000 (SSM Run Command, `ssm` and `dag-ssm`, at 100 and 1,000 only, with AWS
## calls per host) plus the DAG rows alone at 2,000 (the SQLite lock check); ~50 min.
bench-tools:
	test -x .local/ansible-venv/bin/ansible || ($(PYTHON) -m venv .local/ansible-venv && \
	  .local/ansible-venv/bin/pip install --quiet --disable-pip-version-check -r requirements-bench.txt)

bench-quick: $(STAMP) bench-tools
	$(BIN)/python -m devstack.bench.side_by_side --hosts 100,1000 --methods ours,pool,pool-commands,naive,ansible,ssm --naive-sample 10

bench: $(STAMP) bench-tools
	$(BIN)/python -m devstack.bench.side_by_side --hosts 100,1000,10000 --dag-only-hosts 2000
	$(BIN)/python -m devstack.bench.quota --hosts 10000 --reruns 1   # AWS quotas: calls per API, throttles, 100,000-host time; versions (a same-day rerun), raw output, seals; the watch sweep
	$(BIN)/python -m devstack.bench.watch_latency --events 20   # the watch: event → stored verdict → alert

## The watch alone: 20 tamper events through the forwarder, the queue and the triggerer (~5 min).
bench-watch: $(STAMP)
	$(BIN)/python -m devstack.bench.watch_latency --events 20

## Airflow UI (standalone) on the local stack: trigger runs and backfills from the browser.
up: $(STAMP)
	$(BIN)/python -m devstack.run.up

## Refresh the lock from the current venv (after a verified install and a green `make test`).
lock:
	$(BIN)/pip freeze --exclude-editable | grep -v -E '^(pip|setuptools|wheel)==' > constraints.txt

clean:
	rm -rf .local
