# Everything runs from a virtualenv that this Makefile builds from setup.cfg on first use,
# so a fresh machine needs only python3 (3.11+) and make.

VENV ?= .venv
PYTHON := $(VENV)/bin/python

.PHONY: install test lint serve bench clean

install: $(VENV)/.installed

# Rebuilt whenever the dependencies change; the marker records a complete install.
$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --upgrade pip
	$(PYTHON) -m pip install -e '.[test,bench,lint,uvloop]'
	touch $@

test: $(VENV)/.installed
	$(PYTHON) -m pytest -q -p no:cacheprovider --durations=15

# Both linters always run, so one report shows every problem; either failing fails the target.
lint: $(VENV)/.installed
	status=0; \
	$(VENV)/bin/ruff check . || status=1; \
	$(VENV)/bin/mypy main.py shopkeep tests || status=1; \
	exit $$status

# A server to try things on: a new database gets demo users, goods and coupons first (their
# tokens and the admin token are printed that once), and the sandbox gateway is on.
DB ?= shopkeep.db
serve: $(VENV)/.installed
	test -f $(DB) || $(PYTHON) main.py demo --db $(DB)
	$(PYTHON) main.py serve --db $(DB) --sandbox

bench: $(VENV)/.installed
	$(PYTHON) -m shopkeep.bench.runtime --json bench-runtime.json

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
