# Every target sets up what it needs: a fresh clone runs `make tour` or `make test` and nothing else.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
REDIS_BIN_DIR = $(shell ./redis_setup.sh build | tail -n 1)

.PHONY: tour test lint redis stop dashboard clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,dashboard]'
	touch $@

## tour: provision Redis, run every course task, compare each with the course's expected output
tour: $(BIN)/.installed
	./redis_setup.sh
	$(BIN)/python -m course.tour

## test: the whole test suite, each test on its own real redis-server (and fakeredis)
test: $(BIN)/.installed
	REDIS_BIN_DIR="$(REDIS_BIN_DIR)" $(BIN)/python -m pytest

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## dashboard: rq-dashboard, RQ's web UI, on http://127.0.0.1:9181 against REDIS_URL
dashboard: $(BIN)/.installed
	$(BIN)/python -m course.dashboard

## redis / stop: start or stop the project's own Redis (127.0.0.1:$${REDIS_PORT:-6379})
redis:
	./redis_setup.sh

stop:
	./redis_setup.sh stop

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
