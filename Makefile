# Everything runs from a virtualenv that this Makefile builds on first use from requirements.lock
# (the exact versions, with their hashes, that the tests ran with), so a fresh machine needs only
# python3 (3.11+) and make, and gets the versions CI got. `make lock` regenerates the lock from
# pyproject.toml's bounds (newest versions allowed); commit it with the change that needed it.

VENV ?= .venv
PYTHON := $(VENV)/bin/python
LOCK := requirements.lock
# The extras `make install` installs; the lock covers exactly these and the base dependencies.
EXTRAS := test bench lint uvloop
# The tool that writes the lock (only `make lock` installs it).
UV_VERSION := 0.13.9

.PHONY: install lock test lint serve bench bench-http bench-runtime wrk chromium screenshots clean

install: $(VENV)/.installed

# Rebuilt whenever the lock or the metadata change; the marker records a complete install. pip
# stays the version the virtualenv came with: the lock, not pip's own resolver, picks every
# version. The project itself is installed last, editable, without its dependencies (they are
# all in the lock) and built with the locked setuptools.
$(VENV)/.installed: $(LOCK) pyproject.toml
	test -x $(PYTHON) || python3 -m venv $(VENV)
	@$(PYTHON) -c "$$NEEDS_PYTHON" || exit 1
	$(PYTHON) -m pip install --require-hashes --no-deps -r $(LOCK)
	$(PYTHON) -m pip install --no-deps --no-build-isolation -e .
	touch $@

# What the virtualenv must be before anything is installed into it, each in one line: a
# virtualenv of an older python3 (a first `make` before 3.11 was on PATH), or one made without
# pip (Debian's python3 without python3-venv), would fail every later `make` at pip.
define NEEDS_PYTHON
import importlib.util, sys
if sys.version_info < (3, 11):
    sys.exit(f"shopkeep needs Python 3.11 or newer; $(VENV) was made with {sys.version.split()[0]}: run make clean, then make again with python3 3.11+ first on PATH")
if importlib.util.find_spec("pip") is None:
    sys.exit("$(VENV) has no pip (on Debian and Ubuntu, install python3-venv): run make clean, then make again")
endef
export NEEDS_PYTHON

lock:
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install 'uv==$(UV_VERSION)'
	printf 'setuptools>=77\n' | $(VENV)/bin/uv pip compile pyproject.toml - \
		$(foreach extra,$(EXTRAS),--extra $(extra)) --python-version 3.11 --generate-hashes \
		--upgrade --quiet --custom-compile-command 'make lock' -o $(LOCK)

test: $(VENV)/.installed chromium
	$(PYTHON) -m pytest -q -p no:cacheprovider --durations=15

# Both linters always run, so one report shows every problem; either failing fails the target.
lint: $(VENV)/.installed
	status=0; \
	$(VENV)/bin/ruff check . || status=1; \
	$(VENV)/bin/mypy main.py shopkeep tests || status=1; \
	exit $$status

# A server to try things on: a new database gets demo users, goods and coupons first (their
# tokens and the admin token are printed that once), and the sandbox gateway is on. The database
# is DB, else SHOPKEEP_DB, else shopkeep.db.
DB ?= $(or $(SHOPKEEP_DB),shopkeep.db)
serve: $(VENV)/.installed
	test -f '$(DB)' || $(PYTHON) -m shopkeep demo --db '$(DB)'
	$(PYTHON) -m shopkeep serve --db '$(DB)' --sandbox

# The load harness (docs/load-testing.md), a short run against an embedded shop; its figures go
# to bench.json and bench.html.
bench: $(VENV)/.installed
	$(PYTHON) -m shopkeep bench --embedded --duration 20s --concurrency 32 --order-timeout 5s \
		--json bench.json --html bench.html

# The HTTP benchmark (shopkeep beside a bare aiohttp server, docs/performance.md) needs wrk as
# its load generator; without it, it falls back to a slower built-in client and says so.
bench-http: $(VENV)/.installed wrk
	$(PYTHON) -m shopkeep.bench.http --json bench-http.json

# The actor runtime's micro-benchmark.
bench-runtime: $(VENV)/.installed
	$(PYTHON) -m shopkeep.bench.runtime --json bench-runtime.json

# A Debian package ($(1)) that provides $(2), installed when $(2) is missing and apt-get can (as
# root, or through sudo without a password); otherwise a warning saying what happens without
# it ($(3)), never a failure.
define apt_install
	@command -v $(2) >/dev/null && exit 0; \
	if command -v apt-get >/dev/null; then \
		sudo=; [ "$$(id -u)" = 0 ] || sudo='sudo -n'; \
		$$sudo apt-get install -y $(1) || { $$sudo apt-get update && $$sudo apt-get install -y $(1); } \
			|| echo "make: warning: could not install $(1); $(3)" >&2; \
	else \
		echo "make: warning: $(1) is not installed and apt-get is not here to install it; $(3)" >&2; \
	fi
endef

# wrk, the HTTP benchmark's load generator.
wrk:
	$(call apt_install,wrk,wrk,the HTTP benchmark falls back to its built-in client)

# Chromium, which the admin console's browser tests drive through Playwright (they are skipped,
# saying so, where there is none at /usr/bin/chromium); Playwright never downloads a browser of
# its own.
chromium:
	$(call apt_install,chromium,/usr/bin/chromium,the admin console's browser tests will be skipped)

# The admin console's pictures in docs/ (README), taken by headless Chromium.
screenshots: $(VENV)/.installed chromium
	$(PYTHON) -m shopkeep.admin.screenshots docs

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
