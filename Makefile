# Two commands for a newcomer: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= examples/pkiss.yaml

.PHONY: run test install install-test deps lint bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q -e .

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

install-test: $(BIN)/python deps
	$(BIN)/pip install -q -e '.[test]'

lint: install-test
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

test: install-test lint
	$(BIN)/pytest -q

bench: install
	$(BIN)/python bench/run.py
	$(BIN)/python bench/relay.py

clean:
	rm -rf $(VENV) build *.egg-info
