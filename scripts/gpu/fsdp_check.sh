#!/usr/bin/env bash
# FSDP2 through lmforge on GPUs (CPU has no sharding path in transformers/accelerate; see train/distributed.py).
# Run on a GPU machine from the repository root after `make setup`:  bash scripts/gpu/fsdp_check.sh
# Trains the embedded default model 4 steps with --fsdp fsdp2 on every visible GPU (full fine-tuning, so the
# parameters are really sharded), then checks both ranks trained and the saved checkpoint loads and generates.
set -euo pipefail
NGPU="$(python3 -c 'import torch; print(torch.cuda.device_count())' 2>/dev/null || echo 0)"
[ "$NGPU" -ge 1 ] || { echo "no CUDA GPU visible"; exit 1; }
OUT="${OUT:-/tmp}/lmforge-fsdp"
rm -rf "$OUT"
NPROC_PER_NODE="$NGPU" .venv/bin/lmforge sft --dataset self-cognition --model_name 小锻 lmforge-bot \
  --model_author lmforge --tuner_type full --fsdp fsdp2 --max_steps 4 --per_device_train_batch_size 2 \
  --gradient_accumulation_steps 1 --save_steps 4 --logging_steps 1 --output_dir "$OUT" 2>&1 | tee "$OUT.log"
grep -q "trained 4 steps" "$OUT.log"
CKPT="$(ls -d "$OUT"/v*/checkpoint-4)"
echo "Who are you?" | .venv/bin/lmforge infer --model "$CKPT" --max_new_tokens 32 --temperature 0
echo "FSDP check passed: $CKPT"
