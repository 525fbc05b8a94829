# One command sets up a fresh Debian/Ubuntu machine and runs every test.
PY := .venv/bin/python

.PHONY: test setup lint

test: setup lint
	$(PY) -m pytest -q

setup:
	bash scripts/setup.sh

lint:
	.venv/bin/ruff check .
