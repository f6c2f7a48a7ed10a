# Two commands a new user needs: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-all benchmarks deploy system-deps clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/spiral demo

test: $(STAMP) system-deps
	$(BIN)/python -m pytest -q

# Debian packages the tests need: OpenSSH's server (the deploy tests run a real sshd on 127.0.0.1)
# and Chromium (the HTML report is rendered headless). Installed once, when missing.
SYSTEM_PACKAGES := $(if $(wildcard /usr/sbin/sshd),,openssh-server) $(if $(wildcard /usr/bin/chromium),,chromium)
system-deps:
	@if [ -n "$(strip $(SYSTEM_PACKAGES))" ]; then \
		echo "installing Debian packages for the tests: $(strip $(SYSTEM_PACKAGES))"; \
		SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(SYSTEM_PACKAGES) >/dev/null; \
	fi

# `make deploy TARGET=jetson HOST=orin.local [MODEL=...]`: TARGET=jetson is the jetson-orin-nano target
# (deploy/targets/); MODEL defaults to the demo run, whose last accepted student (else its teacher) ships.
TARGET ?= jetson
MODEL ?= runs/demo
HOST ?=
deploy: $(STAMP)
	@if [ "$(MODEL)" = runs/demo ] && [ ! -d runs/demo ]; then \
		echo "make deploy: runs/demo holds no demo run: run 'make demo' first, or pass MODEL=path/to/model.onnx" >&2; \
		exit 2; \
	fi
	$(BIN)/spiral deploy $(MODEL) --target $(TARGET) $(if $(HOST),--host $(HOST))

benchmarks: $(STAMP)
	$(BIN)/python -m pytest benchmarks -q

clean:
	rm -rf runs .pytest_cache
