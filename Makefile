# One command sets up a fresh Debian/Ubuntu machine and runs every test.
PY := .venv/bin/python

.PHONY: test setup lint bench bench-quick boot-root rehearsal rehearsal-down

# Two workers: the integration tests mostly wait on Redis (failover timeouts, joins);
# --dist loadfile keeps each file's module fixtures in one worker.
test: setup lint
	$(PY) -m pytest -q -n 2 --dist loadfile --durations=10

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

# Under a minute: Redis 7.0, one repeat, no failover; benchmarks/results/quick.json.
bench-quick: setup
	$(PY) -m benchmarks --quick

# A first try with no AWS: the stack's servers as Redis processes on loopback, with the shipped
# redis.conf files and bootstrap; prints the health report and the connection string.
# make rehearsal STACK=prod, then make rehearsal-down STACK=prod. REHEARSAL_STATE and HOST_PREFIX
# move its files and addresses (the rehearsal's defaults: .rehearsal/<stack>, 127.0.0.x).
STACK ?= dev
REHEARSAL_STATE ?= .rehearsal/$(STACK)
HOST_PREFIX ?= 127.0.0.
REHEARSE = $(PY) -m operator_tools.rehearsal --stack $(STACK) --state-dir $(REHEARSAL_STATE) --host-prefix $(HOST_PREFIX)

rehearsal: setup
	$(REHEARSE) up
	$(REHEARSE) status

rehearsal-down:
	$(REHEARSE) down
