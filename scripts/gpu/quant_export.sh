#!/usr/bin/env bash
# Device check for the GPU-only quantized exports (AWQ through GPTQModel, fine-grained FP8): each exports a tiny
# llama through the CLI, reloads it in transformers and checks its quality report, then trains LoRA on the AWQ
# export and on EETQ int8 loading (QLoRA) and loads each adapter for infer (tests/export/test_gpu_quant.py,
# `-m gpu`). Needs torch with CUDA and, for AWQ, `pip install gptqmodel optimum`, for EETQ `pip install eetq`;
# nothing is downloaded.
# Usage: scripts/gpu/quant_export.sh [python]   (default: .venv/bin/python, else python3)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${1:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}"
PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" && export PYTHONPATH
"$PY" - <<'PYEOF'
import importlib.util, torch
if not torch.cuda.is_available():
    raise SystemExit("[quant_export] no CUDA device visible to torch")
print(f"[quant_export] torch {torch.__version__}, {torch.cuda.get_device_name(0)}, "
      f"gptqmodel {'present' if importlib.util.find_spec('gptqmodel') else 'ABSENT (the AWQ test will skip)'}, "
      f"eetq {'present' if importlib.util.find_spec('eetq') else 'ABSENT (the EETQ test will skip)'}")
PYEOF
exec timeout 540 "$PY" -m pytest tests/export/test_gpu_quant.py -m gpu -x -q -p no:cacheprovider
