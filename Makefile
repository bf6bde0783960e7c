# The documented interface: make install | test | lint | demo | up | bench | soak.
# Every target builds .venv on first use, so a fresh clone needs only Python 3.11+ and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install lint test test-unit soak fuzz services tools demo up bench format clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "wxkf needs Python 3.11 or newer; PYTHON=$(PYTHON) is " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check libs services tests bench examples
	$(BIN)/ruff format --check libs services tests bench examples
	$(BIN)/mypy
	$(BIN)/lint-imports

# Lint first, then make sure RabbitMQ, Redis and the deployment tools answer, then every test
# (the fault suite beside the rest: scripts/run-tests.sh).
test: lint services tools
	@BIN=$(BIN) scripts/run-tests.sh

# The fault suite's conservation soak at full size: 20,000 pushes from 2,000 users.
soak: $(STAMP) services
	WXKF_SOAK_PUSHES=20000 WXKF_SOAK_RATE=60 $(BIN)/pytest tests/faults/test_soak.py -s

test-unit: $(STAMP)
	$(BIN)/pytest tests/unit

# The push handler fuzzed over HTTP for longer than `make test` does (every mode and format).
FUZZ_EXAMPLES ?= 5000
fuzz: $(STAMP)
	WXKF_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest tests/unit/ingress/test_ingress_fuzz.py -q

services:
	@scripts/ensure-services.sh

tools:
	@PYTHON=$(PYTHON) scripts/ensure-tools.sh

demo: $(STAMP)
	$(BIN)/wxkf demo

up: $(STAMP) services
	$(BIN)/wxkf up

bench: $(STAMP) services
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

format: $(STAMP)
	$(BIN)/ruff check --fix libs services tests bench examples
	$(BIN)/ruff format libs services tests bench examples

clean:
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache .hypothesis
