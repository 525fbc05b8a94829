# One command sets up a fresh Debian/Ubuntu machine and runs every test.
PY := .venv/bin/python

.PHONY: help test setup lint check bench bench-quick boot-root rehearsal rehearsal-down

# A bare `make` explains itself instead of starting the whole suite.
.DEFAULT_GOAL := help

help:
	@echo "make test            set up this machine (apt, venv, Redis 5.0 build) and run every test (as root)"
	@echo "make setup           only the setup: Debian packages, .venv, Redis 5.0, actionlint"
	@echo "make lint            ruff and shellcheck"
	@echo "make check           STACK=dev|prod: check the stack file as pulumi up would, without AWS"
	@echo "make rehearsal       STACK=dev|prod: the stack's servers as Redis processes on loopback, no AWS"
	@echo "make rehearsal-down  STACK=dev|prod: stop them and remove their files"
	@echo "make bench-quick     a one-minute benchmark on Redis 7.0, and its smoke checks"
	@echo "make bench           the full benchmark (about 20 min); rewrites BENCHMARKS.md"
	@echo "make boot-root       build the boot tests' cached Debian root ahead of time"

# Six workers on two cores: many tests wait on Redis (failover timeouts, joins, boots), so more
# workers than cores overlap the waits (tests/tools.py claims each worker's loopback addresses, for any
# count). Measured on a fresh clone: tests in 709 s on six, 857 s on four; later 595 s on six, 611 s on
# eight. tests/conftest.py makes each file one unit (its module fixtures in one worker) except files of
# independent tests, and starts the longest units first; the boot scenarios are one file per fleet so
# they boot side by side. Every test has a timeout (pyproject.toml). The benchmark tool's own smoke run
# is in `make bench-quick`.
WORKERS ?= 6
# Bytecode is cached for what the tests import (setup does not compile every package; see scripts/setup.sh).
test: setup lint
	env -u PYTHONDONTWRITEBYTECODE $(PY) -m pytest -q -n $(WORKERS) --dist loadgroup --no-loadscope-reorder -m "not bench_smoke" --durations=15

setup:
	bash scripts/setup.sh

lint:
	.venv/bin/ruff check .
	shellcheck scripts/setup.sh scripts/boot-root.sh .ci/run

# The cached Debian 12 root of tests/boot (the boot tests build it on first use anyway).
boot-root: setup
	bash scripts/boot-root.sh

# Benchmarks on loopback (see BENCHMARKS.md). Full run ~20 min; rewrites BENCHMARKS.md.
bench: setup
	$(PY) -m benchmarks

# Under a minute: Redis 7.0, one repeat, no failover; benchmarks/results/quick.json. Then the smoke
# run's checks (tests/bench/test_bench_quick.py: every section present and self-consistent).
bench-quick: setup
	$(PY) -m benchmarks --quick
	$(PY) -m pytest -q -m bench_smoke tests/bench

# The stack file checked as `pulumi up` checks it before asking AWS (outsystems_redis/tools/check.py).
check: setup
	$(PY) -m outsystems_redis.tools.check --stack $(STACK)

# A first try with no AWS: the stack's servers as Redis processes on loopback, with the shipped
# redis.conf files and bootstrap; prints the health report and the connection string.
# make rehearsal STACK=prod, then make rehearsal-down STACK=prod. REHEARSAL_STATE and HOST_PREFIX
# move its files and addresses (the rehearsal's defaults: .rehearsal/<stack>, 127.0.0.x).
STACK ?= dev
REHEARSAL_STATE ?= .rehearsal/$(STACK)
HOST_PREFIX ?= 127.0.0.
REHEARSE = $(PY) -m outsystems_redis.tools.rehearsal --stack $(STACK) --state-dir $(REHEARSAL_STATE) --host-prefix $(HOST_PREFIX)

rehearsal: setup
	$(REHEARSE) up

rehearsal-down:
	$(REHEARSE) down
