# The README's whole set-up: `make demo` and `make test`. Both create .venv if it is missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# On a machine without a local CPU wheel, point pip at the CPU index, e.g.
# make test TORCH_SPEC='torch==2.13.0 --index-url <your CPU wheel index>'
TORCH_SPEC ?= torch==2.13.0
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_NO_ADVISORY_WARNINGS := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test test-slow lint format clean browser

# torch is installed first and pinned to the CPU build: a bare `torch` requirement resolves to a multi-GB CUDA
# wheel. pyproject.toml has ranges (users install beside their own torch/transformers); our venv takes the exact
# versions of constraints.txt, so every run installs the same thing. The stamp file re-runs the install when
# pyproject.toml or constraints.txt changes.
$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH_SPEC)

$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	@if $(BIN)/python -c "import importlib.util,sys; sys.exit(importlib.util.find_spec('torchvision') is None)"; then \
		echo "torchvision is installed in $(VENV); it breaks transformers' image processors (see docs/environment.md §3)"; exit 1; fi
	touch $@

demo: $(VENV)/.installed
	$(BIN)/basereward demo

# The browser tests of report.html (tests/test_html_report.py) drive Debian's Chromium through playwright-python
# (a dev dependency). `playwright install` is never run: it downloads a browser of its own, which a closed network
# refuses, and playwright drives /usr/bin/chromium as well. Where Chromium cannot be installed those tests skip
# and say why.
browser:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else echo "make browser: /usr/bin/chromium is missing; install it as root: apt-get install -y chromium"; exit 1; fi

# `make browser` may fail (no root, no network): the suite runs all the same, the browser tests skipping
test: $(VENV)/.installed
	@$(MAKE) --no-print-directory browser || echo "browser tests will be skipped: \`make browser\` failed (above)"
	$(BIN)/python -m pytest -q

test-slow: $(VENV)/.installed
	$(BIN)/python -m pytest -q -m slow

lint: $(VENV)/.installed
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: $(VENV)/.installed
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) runs .pytest_cache
