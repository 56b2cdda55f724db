# Every target builds its own virtual environment (.venv) on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: help install run test lint bench clean native selftest cross asan golden vectors firmware dist boards service

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

# pip install compiles the native kernels (cffi extension): reinstall when they change.
NATIVE_SOURCES := $(wildcard setup.py native/_build_cffi.py native/cdef.py native/include/*.h native/src/*)

$(STAMP): pyproject.toml $(NATIVE_SOURCES)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install the package with its dev tools

# A fresh demo fleet in .demo (or $EDGE_DEMO_DIR) every time; DEMO_ARGS passes options (see --help).
run: $(STAMP)  ## demo: a fleet in .demo, broker, agent, a device sending tasks, edge-watch (Ctrl-C stops)
	@$(BIN)/python -m demo $(DEMO_ARGS)

test: $(STAMP)  ## run the whole test suite
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(STAMP)  ## ruff, mypy and the import rules (lint-imports)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(STAMP)  ## run every benchmark under benchmarks/ and print the figures
	@for b in benchmarks/[!_]*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

native:  ## build libedge_kernels.so and its C++ self-test for this machine (build/native/host)
	$(MAKE) -C native -j2

selftest: cross  ## C++ self-test against the golden vectors: host, then aarch64 + armhf under qemu-user
	$(MAKE) -C native -j2 selftest

cross:  ## cross-build the kernels for aarch64 and armhf, self-test under qemu, stage in native/lib/
	deploy/arm/build.sh

# The ASan runtime first, and libstdc++ preloaded too so that ASan can intercept C++ throws
# in a library that Python dlopens. --capture=sys leaves fd 2 alone for sanitizer reports.
ASAN_RUNTIME = "$$(g++ -print-file-name=libasan.so) $$(g++ -print-file-name=libstdc++.so)"
asan: $(STAMP)  ## ASan+UBSan build of the kernels: C++ self-test, then the Python kernel tests on it
	$(MAKE) -C native -j2 SANITIZE=1 selftest
	EDGE_KERNELS_LIB=$(CURDIR)/build/native/host-asan/libedge_kernels.so EDGE_KERNELS_BACKEND=native \
	LD_PRELOAD=$(ASAN_RUNTIME) ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	$(BIN)/pytest tests/native -m "not selftest" -p no:cacheprovider --capture=sys $(PYTEST_ARGS)

firmware:  ## the C device (firmware_examples/c): native, ASan+UBSan, aarch64 and armhf (checked under qemu)
	$(MAKE) -C firmware_examples/c -j2
	$(MAKE) -C firmware_examples/c -j2 asan
	$(MAKE) -C firmware_examples/c -j2 check-cross

# Needs the cross compilers and qemu-user of `make cross`; DIST_ARGS passes more (--no-selftest, --out).
dist:  ## wheels for x86_64, aarch64, armv7l (each with its kernels), sdist, SHA256SUMS in dist/ (VERSION_SUFFIX=b2: X.Y.Z+b2)
	$(PYTHON) deploy/dist.py $(if $(VERSION_SUFFIX),--version-suffix $(VERSION_SUFFIX)) $(DIST_ARGS)

# As root, with mmdebstrap, arch-test and qemu-user-static (see .ci/run); make test runs these too.
boards: $(STAMP)  ## the agent on emulated arm64/armhf Debian boards: roots built once and cached (EDGE_BOARDS_CACHE), then pytest -m boards
	$(BIN)/python -m tests.boards.roots
	$(BIN)/pytest tests/boards -m boards $(PYTEST_ARGS)

# As root, with systemd-nspawn (systemd-container) and mmdebstrap; make test runs these too.
service: $(STAMP)  ## the systemd units run by systemd as PID 1 in a booted Debian container (tests/service)
	$(BIN)/python -m tests.boards.roots amd64-systemd
	$(BIN)/pytest tests/service -m service $(PYTEST_ARGS)

golden: $(STAMP)  ## regenerate native/selftest/golden.txt from the numpy references
	$(BIN)/python -m native.golden

vectors: $(STAMP)  ## regenerate firmware_examples/vectors/*.json from the protocol library
	$(BIN)/python firmware_examples/vectors/generate.py

clean:  ## remove the venv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
