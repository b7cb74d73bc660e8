# xenha: the two commands of the README are `make demo` and `make test`.
# The system Python is the one that has python3-libvirt and python3-lxml on Debian.
PYTHON ?= /usr/bin/python3
VENV := build/venv
PYTEST := $(PYTHON) -m pytest
export PYTHONPATH := $(CURDIR)/lib:$(CURDIR)
export PYTHONDONTWRITEBYTECODE := 1

LINT_VERSIONS := ruff==0.17.6 mypy==2.4.1 lxml-stubs==0.5.1

.PHONY: all deps packaging-deps tools lint typecheck unit fuzz-ci fuzz acceptance cluster-test demo demo-plan bench bench-plan bench-verify bench-xen man packages package-test xen-lab xen-lab-down xen-test xen-cluster-test demo-xen test clean

all: test

# The main job: a real 3-node cluster, configured with pcs, narrated (KEEP=1 keeps it up).
demo: deps
	$(PYTHON) -m demo.cluster_demo

deps:
	tools/install-deps

$(VENV)/.installed: | deps
	$(PYTHON) -m venv --system-site-packages $(VENV)
	$(VENV)/bin/pip install -q $(LINT_VERSIONS)
	touch $@

tools: $(VENV)/.installed

lint: tools
	$(VENV)/bin/ruff check lib agents bin tests tools demo tools/test-cluster tests/support/cluster/fence_xenha_test $(wildcard bench)
	$(VENV)/bin/ruff format --check lib agents bin

typecheck: tools
	$(VENV)/bin/mypy

unit: deps
	$(PYTEST) -q --doctest-modules lib tools tests/unit tests/support tests/cluster/scenario.py

# Benchmarks against the peers (not part of `make test`): markdown tables on stdout.
# The planner's part is long (~15 minutes); BENCH_ARGS="--sizes small" for a short run.
bench: deps packages
	$(PYTHON) bench/agents_bench.py
	$(PYTHON) bench/plan_bench.py $(BENCH_ARGS)
	$(PYTHON) bench/verify_bench.py
	$(PYTHON) bench/xen_bench.py

# Moving a PV guest between two real Xen hosts of the lab: xenha vs bare libvirt vs
# resource-agents' Xen agent, the guest's pause, xen-host's monitor (~10 minutes with the
# lab's boot; XENLAB_ATTACH=1 uses a lab left up by `make xen-lab KEEP=1`).
bench-xen: packages
	$(PYTHON) bench/xen_bench.py

# Hostile input for both agents: a few hundred cases in `make test`, over 10,000 in `make fuzz`.
fuzz-ci: deps
	$(PYTEST) -q tests/fuzz

fuzz: deps
	XENHA_FUZZ_PROFILE=fuzz $(PYTEST) -q tests/fuzz

acceptance: deps
	$(PYTEST) -q tests/acceptance

# Real 3-node Pacemaker clusters on this machine (root; 6-7 minutes, 4-5 of them the fault
# matrix, docs/fault-matrix.md). -rP prints the measured timings of the passed tests.
cluster-test: deps
	$(PYTEST) -q -rP tests/cluster

# Man pages generated from the agents' meta-data and the CLI's parser (the packages ship them).
man:
	tools/make-manpages build/man

packaging-deps:
	tools/install-deps --packaging

# The DEB and the RPM, built from a clean copy of the tree and checked by lintian and rpmlint.
packages: packaging-deps
	tools/build-packages dist

# Installs the .deb on this machine, checks it from the installed files only, purges it.
package-test: packages
	$(PYTEST) -q tests/packaging

# The Xen lab (tests/support/xenlab, docs/decisions/xen-lab.md): Xen 4.17 hosts as QEMU/TCG
# VMs, a Debian 12 dom0 (cached under build/xenlab/cache) with xenha's .deb installed at boot.
# Prints its timings; KEEP=1 leaves it up and prints how to reach each dom0; XENLAB_ARGS="--hosts 1
# --autoballoon" boots one host without dom0_mem (tests/xen_autoballoon attaches to it).
xen-lab: packages
	$(PYTHON) -m tests.support.xenlab up $(if $(KEEP),--keep) $(if $(CLUSTER),--cluster) $(XENLAB_ARGS) dist/xenha-agents_*.deb

xen-lab-down:
	$(PYTHON) -m tests.support.xenlab down

# The suite on real Xen (the lab booted once for the session); -rA shows what each saw.
# Last, on the same lab, the hosts formed into a Pacemaker cluster and one of them crashed
# during a migration (tests/xen/test_xen_cluster.py; its beyond_budget tests are left to
# xen-cluster-test). Then a 1-host lab booted without dom0_mem (its own run: never two labs
# at once). ~26 minutes.
xen-test: packages
	$(PYTEST) -q -rA -m "not beyond_budget" tests/xen; status=$$?; $(PYTEST) -q -rA tests/xen_autoballoon && exit $$status

# The whole Pacemaker cluster of two Xen hosts (corosync, pacemakerd, sbd in each dom0; pcs;
# SBD fencing on a shared disk): migration through Pacemaker, a refused move, host crash ->
# fencing -> guests restarted where they fit, fencing powering a host off
# (docs/decisions/xen-cluster.md). Its own lab, booted once: ~15 minutes.
xen-cluster-test: packages
	$(PYTEST) -q -rA tests/xen/test_xen_cluster.py

# `make demo` on real Xen: the cluster above, narrated (KEEP=1 leaves it up).
demo-xen: packages
	$(PYTHON) -m demo.xen_demo

# xen-test holds the Xen cluster's crash test; the cluster's three other tests would take the
# suite past its 45-minute budget (docs/decisions/xen-cluster.md): xen-cluster-test runs them
test: deps lint typecheck unit fuzz-ci acceptance package-test cluster-test xen-test

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

# xenha plan against the naive crm_simulate loop and Ganeti's hcheck (long: ~15 minutes;
# BENCH_ARGS="--sizes small" for a two-minute run).
# xenha verify on synthetic clusters up to 32 hosts x 1000 guests (goal: under 2 s; ~1 minute).
bench-verify: deps
	$(PYTHON) bench/verify_bench.py

bench-plan: deps
	$(PYTHON) bench/plan_bench.py $(BENCH_ARGS)

clean:
	rm -rf build dist .pytest_cache .mypy_cache .ruff_cache
