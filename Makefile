# Two commands on a fresh machine: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Empty: the commands' own rule (config.toml when present, else config.example.toml); `make run CONFIG=x.toml`.
CONFIG ?=

.PHONY: run test lint bench fuzz clean install dev

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# `make run PORT=28080 SANDBOX_PORT=28090` when 8080/8090 are taken (simulate then takes the same --port and
# --sandbox-port: `make run` prints the command).
run: install
	$(BIN)/python -m bot run$(if $(CONFIG), --config $(CONFIG))$(if $(UNVERIFIED), --unverified)$(if $(RETIRED), --recognition-retired)$(if $(PORT), --port $(PORT))$(if $(SANDBOX_PORT), --sandbox-port $(SANDBOX_PORT))

# Three test processes, a module per process (its fixtures stay together): most tests wait on sockets and clocks,
# but the scaled-clock ones need the CPU when their moment comes, and four processes on 2 cores starved them.
test: install lint
	$(BIN)/python -m pytest -q -n 3 --dist loadfile

# ruff (lint) and mypy (types), configured in pyproject.toml; part of make test.
lint: install
	$(BIN)/ruff check bot handlers tests benchmarks
	$(BIN)/mypy

bench: install
	$(BIN)/pip install -q -e '.[dev,bench]'
	$(BIN)/python benchmarks/webhook.py --breakdown
	$(BIN)/python benchmarks/webhook_instructions.py
	$(BIN)/python benchmarks/voice.py
	$(BIN)/python benchmarks/voice_reply.py
	$(BIN)/python benchmarks/delivery.py
	$(BIN)/python benchmarks/delivery.py --pickup
	$(BIN)/python benchmarks/delivery.py --overload
	$(BIN)/python benchmarks/llm_stream.py
	$(BIN)/python benchmarks/report.py

# Hostile input at length: FUZZ_EXAMPLES generated requests (default 50000), not derandomized; prints the count.
FUZZ_EXAMPLES ?= 50000
# Delivery schedules at length too: SCHEDULES per store and mode (default 2000; make test explores 510 in all).
SCHEDULES ?= 2000
fuzz: install
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -q -s --timeout=3600 tests/test_fuzz.py
	SCHEDULES=$(SCHEDULES) $(BIN)/python -m pytest -q --timeout=7200 tests/test_delivery_schedules.py

clean:
	rm -rf $(VENV) .voicebot
