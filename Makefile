# The two commands the README documents: `make run` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
# Test tools with pins that clash with certgate's own (sslyze wants an older cryptography).
TOOLS ?= .venv-tools
CONFIG ?= config.example.yaml

.PHONY: install tools system-packages lint test run bench

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	# Bytecode for certgate's own modules, written even where PYTHONDONTWRITEBYTECODE is set
	# (an editable install is not compiled by pip): without it every `certgate` start
	# compiles ~90 modules from source, ~0.2 s. Python ignores a .pyc older than its source.
	$(PY) -m compileall -q certstore gateway
	touch $@

install: $(VENV)/.installed

$(TOOLS)/.installed: Makefile
	python3 -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install -q --upgrade pip
	$(TOOLS)/bin/python -m pip install -q 'sslyze>=6.1,<7'
	touch $@

tools: $(TOOLS)/.installed

# Debian packages the tests drive for real (openssl, curl, CUPS ipptool/ippeveprinter...).
system-packages:
	scripts/install-system-packages .ci/apt-packages.txt

lint: install
	$(VENV)/bin/ruff check certstore gateway tests bench
	$(VENV)/bin/mypy

# Two pytest workers, one test file each at a time (a file's module fixtures, such as the
# fleet's nodes or ippeveprinter, start once): much of the suite waits on subprocesses,
# sockets and timers, so two workers on two cores take ~7 min instead of ~10. Files go out
# in collection order, which puts the slow ones first (tests/conftest.py).
PYTEST_WORKERS ?= 2

test: install tools system-packages lint
	$(VENV)/bin/pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder

run: install
	$(VENV)/bin/certgate -c $(CONFIG) init
	$(VENV)/bin/certgate -c $(CONFIG) serve

bench: install
	$(PY) bench/bench_store.py
