# Two commands on a fresh machine: `make run` and `make test`. Both create .venv as needed.
VENV   ?= .venv
.DEFAULT_GOAL := $(VENV)/.run-installed
PY     := $(VENV)/bin/python

.PHONY: run test lint bench bench-quick clean chromium test-packages FORCE
FORCE:

# The interpreter of .venv, unless PYTHON is given: the system's own CPython when it is 3.11 or
# newer and can make a venv, else the first python3 on PATH. Distributions build theirs with
# profile-guided and link-time optimisation, as the official Docker image is built; here
# Debian's ran the bridge's hot path 14-24 % faster than pyenv's plain build
# (docs/performance.md).
ifeq ($(origin PYTHON),undefined)
PYTHON := $(shell /usr/bin/python3 -c 'import sys, ensurepip; sys.exit(sys.version_info < (3, 11))' \
	2>/dev/null && echo /usr/bin/python3 || echo python3)
endif

# .venv is made by $(PYTHON); a .venv made by another interpreter (an earlier choice, another
# PYTHON) is made again. The file is only rewritten when the interpreter changes.
$(VENV)/.interpreter: FORCE
	@want="$$($(PYTHON) -c 'import sys; print(sys.prefix, sys.version.split()[0])')"; \
	if [ "$$(cat $@ 2>/dev/null)" != "$$want" ]; then \
		rm -rf $(VENV) && $(PYTHON) -m venv $(VENV) && echo "$$want" > $@; \
	fi

$(VENV)/.run-installed: pyproject.toml $(VENV)/.interpreter
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.dev-installed: pyproject.toml $(VENV)/.interpreter
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@ $(VENV)/.run-installed

run: $(VENV)/.run-installed
	$(VENV)/bin/voicebridge serve

test: $(VENV)/.dev-installed test-packages
	$(PY) -m ruff check .
	$(PY) -m pytest -q -rs -n 2

lint: $(VENV)/.dev-installed
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# Benchmarks print tables; they are never part of `make test` (timings on shared machines).
bench: $(VENV)/.dev-installed
	$(PY) bench/audio.py
	$(PY) bench/barge_in.py
	$(PY) bench/hotpath.py
	$(PY) bench/load.py

bench-quick: $(VENV)/.dev-installed
	$(PY) bench/load.py --quick

# The softphone test drives Debian's Chromium (playwright cannot download its own browser
# here); the shared-state tests run a real redis-server. Each is installed once when missing
# and apt is there; otherwise those tests skip, and `pytest -rs` says why.
test-packages:
	@missing=""; \
	test -x /usr/bin/chromium || missing="chromium"; \
	test -x /usr/bin/redis-server || missing="$$missing redis-server"; \
	if [ -n "$$missing" ] && command -v apt-get >/dev/null; then \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; } \
		|| echo "make: could not install$$missing; the tests that need it will skip"; \
	fi

chromium:
	@test -x /usr/bin/chromium || ! command -v apt-get >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
