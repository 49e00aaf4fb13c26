# Every target sets up what it needs: a fresh clone runs `make tour` or `make test` and nothing else.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: help install tour check reset test lint redis stop dashboard clean

# `make` alone lists the targets; `make install` sets up, and every other target does so itself.
.DEFAULT_GOAL := help

## help: this list: every target with what it does
# Each target's line is its `## target: what it does` comment, aligned in two columns.
help:
	@sed -n 's/^## //p' $(firstword $(MAKEFILE_LIST)) | awk -F': ' '{ name = $$1; sub(/^[^:]*: /, ""); printf "  %-14s %s\n", name, $$0 }'

# editable_mode=compat: the project's path in a .pth file, read at start-up. The default mode
# imports a finder module there instead, 17 ms into every Python start (every lesson, every
# test's subprocess) during which Ctrl-C is a fatal start-up error rather than a quiet stop.
$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --config-settings editable_mode=compat -e '.[test,dashboard]'
	touch $@

## install: the virtual environment .venv with the project and its dependencies
install: $(BIN)/.installed

## tour: every course task in order, each compared with the course, on a Redis of its own
# The project's own code, trusted: it runs outside the sandbox `make check` uses. All 11 tasks must match.
tour: $(BIN)/.installed
	$(BIN)/python -m checker.tour

## check: the course run against solutions, each in a sandbox: make check DIR="a b c" [REPORT=file.json]
# Several folders are checked side by side and end with a table; VERBOSE=1 prints each whole check.
check: $(BIN)/.installed
	@test -n "$(DIR)" || { echo 'Usage: make check DIR="path/to/solution ..." [REPORT=file.json] [VERBOSE=1]' >&2; exit 2; }
	$(BIN)/python -m checker.check $(DIR) $(if $(REPORT),--report "$(REPORT)") $(if $(VERBOSE),--verbose)

## reset: the course's fresh state back on REDIS_URL: stock, 50 seats, no HolbertonSchools
reset: $(BIN)/.installed
	$(BIN)/python -m course.reset

## test: the whole test suite, each test on its own real redis-server (and fakeredis)
# redis_setup.sh build prints what it did, then the directory holding redis-server.
# The tests start Python about a thousand times: compiled once, the course's modules are read
# from a bytecode cache kept in .pytest_cache (not beside the sources), even where the
# environment asks Python to write none (PYTHONDONTWRITEBYTECODE): a fifth less CPU.
# TEST_WORKERS tests at once (pytest-xdist): measured on 2 cores, 8 beat 4 and 6, since the tests
# mostly wait on their subprocesses. The longest start first (tests/conftest.py), handed out one
# at a time (--maxschedchunk 1): xdist's load mode otherwise gives each worker a run of consecutive
# tests, and the first worker got every fault test: 230-250 s instead of about 110.
TEST_WORKERS ?= 8
test: $(BIN)/.installed
	@built="$$(./redis_setup.sh build)" || exit 1; echo "$$built"; \
	REDIS_BIN_DIR="$$(echo "$$built" | tail -n 1)" PYTHONDONTWRITEBYTECODE= PYTHONPYCACHEPREFIX="$(CURDIR)/.pytest_cache/bytecode" \
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist load --maxschedchunk 1

## lint: ruff's checks and its formatting check, as CI runs them
lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## dashboard: rq-dashboard, RQ's web UI, on http://127.0.0.1:${DASHBOARD_PORT:-9181} against REDIS_URL
dashboard: $(BIN)/.installed
	$(BIN)/python -m course.dashboard

## redis: start the project's own Redis (127.0.0.1:${REDIS_PORT:-6379}), or find it running
redis:
	./redis_setup.sh

## stop: stop the project's own Redis
stop:
	./redis_setup.sh stop

## clean: remove .venv and the tools' caches (the Redis build and .redis/ stay)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
