# Two commands on a fresh machine with Python 3 and make:
#   make demo   create .venv (pinned) and run the tutorial end to end on built-in data
#   make test   create .venv (pinned) and run lint + the test suite
# CI also runs 'make test-newest': the Python engine on the newest blosc2 (a second venv).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_DIR ?= demo_out

.PHONY: venv demo test test-loaded test-newest lint format bench notebook lock clean
NEWEST       := .venv-newest
NEWEST_STAMP := $(NEWEST)/.installed
TEST_MODELS  := build/test-models

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt pip setuptools
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/btune demo --output $(DEMO_DIR)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: $(STAMP) lint
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# The suite with every core kept busy (tests/cpu_burner.py stops its burners whatever happens):
# a test that fails only here depends on timing.
test-loaded: $(STAMP)
	$(BIN)/python tests/cpu_burner.py -- $(BIN)/python -m pytest -q $(PYTEST_ARGS)

# The newest blosc2 (constraints-newest.txt): no TensorFlow, and the plugin is never called
# there. The models it uses are trained first by the main environment.
$(NEWEST_STAMP): pyproject.toml constraints-newest.txt
	rm -rf $(NEWEST)
	$(PYTHON) -m venv $(NEWEST)
	$(NEWEST)/bin/python -m pip install -q -c constraints-newest.txt pip setuptools
	$(NEWEST)/bin/python -m pip install -q -c constraints-newest.txt -e . pytest pytest-timeout h5py hdf5plugin
	touch $(NEWEST_STAMP)

test-newest: $(STAMP) $(NEWEST_STAMP)
	$(BIN)/python -m tests.test_engines_newest $(TEST_MODELS)
	BTUNE_WRAP_TEST_MODELS=$(TEST_MODELS) $(NEWEST)/bin/python -m pytest -q tests/test_engines_newest.py tests/test_infer_fast.py tests/test_h5sink.py

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

notebook: $(STAMP)
	$(BIN)/python -m pip install -q -c constraints.txt jupyterlab==4.6.6
	$(BIN)/jupyter lab notebooks/

lock:
	rm -rf .lockenv && $(PYTHON) -m venv .lockenv
	.lockenv/bin/python -m pip install -q -e '.[dev]' 'blosc2==4.0.0' 'blosc2-btune==1.2.1'
	.lockenv/bin/python -m pip freeze --exclude-editable > constraints.new && rm -rf .lockenv
	@echo "review constraints.new, then move it over constraints.txt"

clean:
	rm -rf $(VENV) $(NEWEST) $(DEMO_DIR) build .pytest_cache
