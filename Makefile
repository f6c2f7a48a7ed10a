# Two commands a new user needs: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test deploy system-deps clean

# pyproject.toml declares version ranges; constraints.txt pins the versions this environment gets.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/spiralprune demo

test: $(STAMP) system-deps case-deps
	$(BIN)/python -m pytest -q --durations=15

# Debian packages the tests need: OpenSSH's server (the deploy tests run a real sshd on 127.0.0.1),
# Chromium (the HTML report is rendered headless) and Git LFS (the CI example takes a released model
# kept in LFS). Installed once, when missing.
SYSTEM_PACKAGES := $(if $(wildcard /usr/sbin/sshd),,openssh-server) $(if $(wildcard /usr/bin/chromium),,chromium) \
	$(if $(wildcard /usr/bin/git-lfs),,git-lfs)
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
	$(BIN)/spiralprune deploy $(MODEL) --target $(TARGET) $(if $(HOST),--host $(HOST))

# The case studies of examples/ (images, text, speech, segmentation, detection): their data comes from Debian packages.
# `--resume` makes a second `make example-<case>` reuse the finished run instead of refusing its folder.
.PHONY: example-image example-text example-speech example-segmentation example-detection case-deps
CASE_PACKAGES := dataset-fashion-mnist fortunes espeak-ng
case-deps:
	@missing=$$(for p in $(CASE_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing" $$missing "(for the case studies)"; \
		SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

example-image: $(STAMP) case-deps
	$(BIN)/python -m spiralprune.pipeline.casestudies.images
	$(BIN)/spiralprune run examples/image/config.yaml --out runs/example-image --resume

example-text: $(STAMP) case-deps
	$(BIN)/spiralprune run examples/text/config.yaml --out runs/example-text --resume

example-speech: $(STAMP) case-deps
	$(BIN)/spiralprune run examples/speech/config.yaml --out runs/example-speech --resume

example-segmentation: $(STAMP) case-deps
	$(BIN)/spiralprune run examples/segmentation/config.yaml --out runs/example-segmentation --resume

example-detection: $(STAMP) case-deps
	$(BIN)/spiralprune run examples/detection/config.yaml --out runs/example-detection --resume

# The low end of pyproject.toml's torch range (TORCH_LOW, TORCHVISION_LOW: PyPI's builds, about 5 GB
# downloaded once; --isolated passes by a pip cap a machine may set) in its own environment, and the
# suite's core there; `make check-torch-low TORCH_LOW=2.13.0 TORCHVISION_LOW=0.28.0` tries below the range.
# Not part of `make test`: docs/install.md says when it last passed.
TORCH_LOW ?= 2.14.0
TORCHVISION_LOW ?= 0.29.0
LOW := .venv-torch-low
LOW_TESTS := tests/pipeline/test_spiral.py tests/pipeline/prune tests/pipeline/test_export.py tests/pipeline/tasks \
	tests/pipeline/distill tests/deploy/test_profiler.py tests/pipeline/passes tests/test_your_model.py \
	tests/pipeline/test_api.py tests/pipeline/test_scoring.py

.PHONY: check-torch-low
check-torch-low:
	test -x $(LOW)/bin/python || $(PYTHON) -m venv $(LOW)
	$(LOW)/bin/python -m pip install --quiet --isolated torch==$(TORCH_LOW) torchvision==$(TORCHVISION_LOW)
	grep -v -E '^(torch|torchvision|triton|nvidia-[a-z0-9-]*|cuda-[a-z-]*)==' constraints.txt > $(LOW)/constraints.txt
	$(LOW)/bin/python -m pip install --quiet --isolated -c $(LOW)/constraints.txt '.[dev]'
	PYTHONPATH=. $(LOW)/bin/python -m pytest -q -p no:cacheprovider $(LOW_TESTS)

clean:
	rm -rf runs .pytest_cache
