# Two commands on a fresh machine: `make run` and `make test`. Both create .venv as needed.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: run test lint bench bench-quick clean chromium

$(VENV)/.run-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.dev-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@ $(VENV)/.run-installed

run: $(VENV)/.run-installed
	$(VENV)/bin/voicebridge serve

test: $(VENV)/.dev-installed chromium
	$(PY) -m ruff check .
	$(PY) -m pytest -q

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
# here). Installed once when missing and apt is there; otherwise that test skips.
chromium:
	@test -x /usr/bin/chromium || ! command -v apt-get >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
