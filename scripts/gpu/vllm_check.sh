#!/usr/bin/env bash
# Device check for `--infer_backend vllm` on a GPU: lmforge deploy starts vLLM's own OpenAI server from the vLLM
# environment, a chat request goes through the openai client, and greedy tokens equal the PyTorch engine's
# (tests/infer/test_vllm.py, `-m gpu` and the slow equality test). Nothing is downloaded: the vLLM environment
# must already be on the machine (vLLM pins its own torch, so it is a separate venv).
# Usage: scripts/gpu/vllm_check.sh VLLM_PYTHON [python]
#   VLLM_PYTHON: the python of a venv with vllm (CUDA) installed; python: lmforge's (default .venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/../.."
VLLM_PY="${1:?usage: scripts/gpu/vllm_check.sh VLLM_PYTHON [python]}"
PY="${2:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
"$VLLM_PY" - <<'PYEOF'
import torch, vllm
assert torch.cuda.is_available(), "no CUDA device visible to the vLLM environment's torch"
print(f"[vllm_check] vllm {vllm.__version__}, torch {torch.__version__}, {torch.cuda.get_device_name(0)}")
PYEOF
export LMFORGE_VLLM_PYTHON="$VLLM_PY"
exec timeout 540 "$PY" -m pytest tests/infer/test_vllm.py -m "gpu or slow" -x -q -s -p no:cacheprovider
