# xenha: the two commands of the README are `make demo` and `make test`.
# The system Python is the one that has python3-libvirt and python3-lxml on Debian.
PYTHON ?= /usr/bin/python3
VENV := build/venv
PYTEST := $(PYTHON) -m pytest
export PYTHONPATH := $(CURDIR)/lib:$(CURDIR)
export PYTHONDONTWRITEBYTECODE := 1

LINT_VERSIONS := ruff==0.17.6 mypy==2.4.1 lxml-stubs==0.5.1

.PHONY: all deps tools lint typecheck unit acceptance test clean

all: test

deps:
	tools/install-deps

$(VENV)/.installed: | deps
	$(PYTHON) -m venv --system-site-packages $(VENV)
	$(VENV)/bin/pip install -q $(LINT_VERSIONS)
	touch $@

tools: $(VENV)/.installed

lint: tools
	$(VENV)/bin/ruff check lib agents bin tests tools bench
	$(VENV)/bin/ruff format --check lib agents bin

typecheck: tools
	$(VENV)/bin/mypy

unit: deps
	$(PYTEST) -q --doctest-modules lib tests/unit

acceptance: deps
	$(PYTEST) -q tests/acceptance

test: deps lint typecheck unit acceptance

clean:
	rm -rf build dist .pytest_cache .mypy_cache .ruff_cache
