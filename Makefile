# Two commands do all set-up on a fresh Linux machine with Python 3.11:
#   make book   [PROFILE=default|smoke|replication|pythia] [SET="k=v ..."]  -> HTML under book/_build/html
#   make test                                                -> the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PROFILE ?= default
STAMP := $(VENV)/.installed

.PHONY: setup book test bench lint clean

$(STAMP): requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first and alone: the pinned CPU wheel then satisfies every later requirement
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -r requirements.txt
	# make sae_core importable from the venv (notebooks, papermill kernels, pytest)
	echo "$(CURDIR)" > "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/sae_report.pth"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

setup: $(STAMP)

book: $(STAMP)
	$(BIN)/python -m sae_core.report --profile $(PROFILE) $(foreach o,$(SET),--set $(o))

test: $(STAMP)
	$(BIN)/python -m ruff check sae_core tests notebooks benchmarks
	$(BIN)/python -m pytest tests
	$(BIN)/python -m pytest --rootdir . --nbval --nbval-sanitize-with tests/nbval_sanitize.cfg .cache/smoke-book/book/executed .cache/smoke-lm-book/book/executed

bench: $(STAMP)
	$(BIN)/python -m benchmarks $(filter-out bench,$(MAKECMDGOALS))
# `make bench train` runs one benchmark: the words after `bench` are its arguments, not targets
ifeq (bench,$(firstword $(MAKECMDGOALS)))
$(filter-out bench,$(MAKECMDGOALS)): ; @:
endif

lint: $(STAMP)
	$(BIN)/python -m ruff check sae_core tests notebooks benchmarks

clean:
	rm -rf book/_build book/executed .cache
