# cimtile: thin targets over Python entry points; every target sets up .venv on first use.
PY        ?= python3.11
VENV      := .venv
PYTHON    := $(VENV)/bin/python
STAMP     := $(VENV)/.installed
CONFIG    ?= tiny
TESTS     ?=
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: install test sim verilog synth bench lint docs clean

# The environment is a file target: built from nothing (CPU torch pinned first so no CUDA build is
# pulled), then the project in editable mode with its extras.
$(STAMP): pyproject.toml
	@command -v $(PY) >/dev/null 2>&1 || { echo "error: $(PY) not found (set PY=python3.x)"; exit 1; }
	$(PY) -m venv $(VENV)
	$(PYTHON) -m pip install -q --upgrade pip
	$(PYTHON) -m pip install -q "torch==2.13.0"
	$(PYTHON) -m pip install -q -e ".[sim,fpga,train,dev]"
	@touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PYTHON) -m pytest -n 2 -q

sim: $(STAMP)
	@echo "make sim: RTL co-simulation lands with issue 4 (cocotb on Verilator); not available yet"; exit 2

verilog: $(STAMP)
	@echo "make verilog: the Amaranth tile lands with issue 3; not available yet"; exit 2

synth: $(STAMP)
	@echo "make synth: the Amaranth tile lands with issue 3; not available yet"; exit 2

bench: $(STAMP)
	$(PYTHON) -m bench

lint: $(STAMP)
	$(PYTHON) -m ruff check .

docs: $(STAMP)
	$(PYTHON) -m hw.isa --doc > docs/isa.md

clean:
	rm -rf build sim_build .pytest_cache .hypothesis .ruff_cache
