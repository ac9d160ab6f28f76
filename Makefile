# The two commands a newcomer needs:
#   make serve   install what is needed, build the site, serve it on 127.0.0.1
#   make test    install what is needed, run every test
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
WHEELS := .pyodide-wheels
PORT ?= 8000
BASE_PATH ?= /
PYTEST_PYODIDE := pytest==9.2.0

.PHONY: setup build serve test lint unit browser accuracy stacks accuracy-runtimes fuzz clean

setup: $(VENV)/.ok node_modules/.ok $(WHEELS)/.ok

$(VENV)/.ok: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

node_modules/.ok: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

# Pure-Python pytest wheels for the Python inside Pyodide, whose version is read from
# the pinned Pyodide lockfile so a Pyodide bump brings the matching wheels.
$(WHEELS)/.ok: node_modules/.ok $(VENV)/.ok
	rm -rf $(WHEELS)
	$(BIN)/pip download --quiet --only-binary=:all: --implementation py --abi none \
	  --platform any -d $(WHEELS) \
	  --python-version $$(node -p "require('./node_modules/pyodide/pyodide-lock.json').info.python.split('.').slice(0,2).join('.')") \
	  $(PYTEST_PYODIDE)
	touch $@

build: setup
	$(BIN)/python build.py --base-path $(BASE_PATH)

serve: build
	@echo "Serving on http://127.0.0.1:$(PORT)/ (Ctrl-C stops)"
	$(BIN)/python -m http.server --directory _site --bind 127.0.0.1 $(PORT)

# Headless Chromium for the end-to-end tests: CHROMIUM_PATH, Playwright's own browser
# or the system's; installs Debian's chromium when none is found.
browser: $(VENV)/.ok
	@$(BIN)/python tests/e2e/chromium.py --check || \
	  ( apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium )

lint: $(VENV)/.ok
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: setup browser lint
	$(BIN)/pytest

# The long property run: 20,000 random scenarios per invariant (EXAMPLES=500 for a short one).
EXAMPLES ?= 20000
fuzz: $(VENV)/.ok
	$(BIN)/python benchmarks/fuzz.py --examples $(EXAMPLES)

# Measure real PyTorch memory for the accuracy suite (CPU, a few GB of installs).
accuracy:
	benchmarks/accuracy/run.sh

# Run the training stacks (plain loop, DDP, FSDP2, HF Trainer, TRL, DeepSpeed) on the CPU.
stacks:
	benchmarks/stacks/run.sh

# Measure llama.cpp's buffers on the CPU for the runtimes accuracy tests (builds
# llama.cpp through llama-cpp-python; writes about 26 GB of GGUF files to /tmp).
accuracy-runtimes:
	benchmarks/runtimes/run.sh

clean:
	rm -rf _site $(VENV) node_modules $(WHEELS) .pytest_cache .mypy_cache .ruff_cache
