# Two commands for a newcomer: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= examples/pkiss.yaml
# The hot modules (SIP stack, B2BUA, routing, SDP: GROUPS in setup.py) are compiled with mypyc,
# which needs a C compiler and Python's headers (`make build-deps`). PKISS_PURE=1 installs the
# plain Python package instead: nothing to compile, every module its .py.
PKISS_PURE ?=
export PKISS_PURE
ifneq ($(filter-out 0,$(PKISS_PURE)),)
MODE := pure
else
MODE := compiled
endif
# What the compiled modules are built from: a change to one rebuilds them (make install).
BUILD_INPUTS := pyproject.toml setup.py tools/build_backend.py $(shell find src -name '*.py')

.PHONY: run test install install-test deps build-deps lint bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Debian packages mypyc needs to build the compiled modules: gcc, the C library's headers, and
# Python's (python3-dev; a Python built from source, pyenv's, has them already).
build-deps:
ifeq ($(MODE),compiled)
	@missing=""; command -v gcc >/dev/null 2>&1 || missing="gcc libc6-dev"; \
	$(PY) -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
	  || missing="$$missing python3-dev"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
endif

# One stamp per mode: switching PKISS_PURE reinstalls, and so does a change to a source file
# (a compiled module's .so would otherwise shadow its edited .py). Switching to pure deletes
# the .so files; a stale one would be imported instead of its .py.
$(VENV)/.installed-$(MODE): $(BIN)/python $(BUILD_INPUTS)
	rm -f $(VENV)/.installed-* $(VENV)/.installed-test-*
	find src -name '*.so' -delete
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test-$(MODE): $(BIN)/python $(BUILD_INPUTS)
	rm -f $(VENV)/.installed-* $(VENV)/.installed-test-*
	find src -name '*.so' -delete
	$(BIN)/pip install -q -e '.[test]'
	touch $@ $(VENV)/.installed-$(MODE)

install: build-deps $(VENV)/.installed-$(MODE)

run: install
	$(BIN)/pkiss run -c $(CONFIG)

# Debian packages the end-to-end tests drive: SIPp (sip-tester) plays operators and PBXs,
# SIPVicious (svmap, svwar, svcrack) plays the scanners the SBC must stop, PostgreSQL keeps
# call detail records, Redis shares state between nodes, rtpengine relays media, socat puts
# OpenSSL's TLS in front of SIPp (which has none; openssl makes the test certificates),
# headless Chromium shows the dashboard; SIP software nobody here wrote proves interoperability:
# baresip and linphone-cli as phones and PBXs, Kamailio as a carrier's edge proxy; sngrep and
# tcpdump read traces.
DEB_TOOLS := sipp:sip-tester svmap:sipvicious redis-server:redis-server socat:socat \
	openssl:openssl rtpengine:rtpengine-daemon chromium:chromium baresip:baresip \
	linphonec:linphone-cli kamailio:kamailio sngrep:sngrep tcpdump:tcpdump
deps:
	@missing=""; for pair in $(DEB_TOOLS); do \
	  command -v $${pair%%:*} >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; done; \
	ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

install-test: deps build-deps $(VENV)/.installed-test-$(MODE)

lint: install-test
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

# PYTEST_ARGS narrows the run (CI runs the suite compiled, then the unit tests pure).
PYTEST_ARGS ?=
test: install-test lint
	@echo "pkiss $(MODE): $$(find src -name '*.so' | wc -l) compiled extension files"
	$(BIN)/pytest -q $(PYTEST_ARGS)

bench: install
	$(BIN)/python bench/run.py
	$(BIN)/python bench/relay.py

clean:
	rm -rf $(VENV) build *.egg-info
	find src -name '*.so' -delete
