# The two commands the README documents: `make run` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
CONFIG ?= config.example.yaml

.PHONY: install system-packages lint test run bench

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

# Debian packages the tests drive for real (openssl, curl, CUPS ipptool/ippeveprinter...).
system-packages:
	scripts/install-system-packages .ci/apt-packages.txt

lint: install
	$(VENV)/bin/ruff check certstore gateway tests bench
	$(VENV)/bin/mypy

test: install system-packages lint
	$(VENV)/bin/pytest

run: install
	$(VENV)/bin/certgate -c $(CONFIG) init
	$(VENV)/bin/certgate -c $(CONFIG) serve

bench: install
	$(PY) bench/bench_store.py
