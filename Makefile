# xenha: the two commands of the README are `make demo` and `make test`.
# The system Python is the one that has python3-libvirt and python3-lxml on Debian.
PYTHON ?= /usr/bin/python3
VENV := build/venv
PYTEST := $(PYTHON) -m pytest
export PYTHONPATH := $(CURDIR)/lib:$(CURDIR)
export PYTHONDONTWRITEBYTECODE := 1

LINT_VERSIONS := ruff==0.17.6 mypy==2.4.1 lxml-stubs==0.5.1

.PHONY: all deps tools lint typecheck unit acceptance test clean demo demo-plan bench-plan

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

# The planner on the example pool (examples/planner/, a five-host running cluster): its
# N+k plan, what one more guest would do to it, the hosts' usage, and a pool too tight.
demo-plan: deps
	bin/xenha plan --cib examples/planner/pool.xml --failures 2 || true
	@echo
	bin/xenha check-add --memory 8192 --vcpus 4 --cib examples/planner/pool.xml || true
	@echo
	bin/xenha check-add --memory 24576 --vcpus 12 --cib examples/planner/pool.xml || true
	@echo
	bin/xenha status --cib examples/planner/pool.xml
	@echo
	bin/xenha plan --cib examples/planner/pool-tight.xml || true

demo: demo-plan

# xenha plan against the naive crm_simulate loop and Ganeti's hcheck (long: ~15 minutes;
# BENCH_ARGS="--sizes small" for a two-minute run).
bench-plan: deps
	$(PYTHON) bench/plan_bench.py $(BENCH_ARGS)

clean:
	rm -rf build dist .pytest_cache .mypy_cache .ruff_cache
