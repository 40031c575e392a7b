# The README's two commands: `make run` and `make test`. Both install what they need first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=

.PHONY: run test install bench scaleout clean

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --constraint constraints.txt --editable '.[dev]'
	touch $@

install: $(VENV)/.installed

# The embedded default: SQLite, in-memory channel layer, the in-process simulator.
run: install
	$(PY) manage.py migrate --noinput
	SIMULATOR_BASE_URL=$${SIMULATOR_BASE_URL:-http://$(HOST):$(PORT)/simulator/v1} $(PY) manage.py bootstrap
	@echo "HexGrid Playground: http://$(HOST):$(PORT)/"
	$(PY) -m playground.serve --bind $(HOST) --port $(PORT)

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

# The scale-out shape on this machine: 2 Daphne processes behind HAProxy (Debian's package, installed
# when missing) on DATABASE_URL (PostgreSQL) and REDIS_URL; HAProxy on PORT.
scaleout: install
	$(PY) scripts/scaleout.py --host $(HOST) --port $(PORT)

# The benchmarks print their numbers and targets (a few minutes; run them on a quiet machine).
bench: install
	$(PY) bench/simulator_throughput.py
	$(PY) bench/relay.py
	$(PY) bench/compare.py
	$(PY) bench/history_list.py
	$(PY) bench/logprobs_render.py
	$(PY) bench/batch.py

clean:
	rm -rf $(VENV) staticfiles
