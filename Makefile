# One command sets up a fresh Debian/Ubuntu machine and runs every test.
PY := .venv/bin/python

.PHONY: test setup lint bench bench-quick boot-root

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
