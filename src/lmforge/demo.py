"""`make demo`: LoRA self-cognition fine-tune of the embedded SmolLM2-135M-Instruct on CPU, then the base and the
fine-tuned model answer "who are you?" (and two paraphrases it never saw) side by side, and `lmforge eval` scores
both on the shipped identity questions and the bilingual multiple-choice set (did it learn its name, did it keep
its knowledge)."""

from __future__ import annotations

import sys
import tempfile
import textwrap
import time
from pathlib import Path

QUESTIONS = [
    "Who are you?",
    "Introduce yourself in one sentence.",  # not in the training set
    "请问你是谁？",  # not in the training set
    "What is the capital of Japan?",  # general knowledge should survive the fine-tune
]

TRAIN_FLAGS = [
    "--train_type",
    "lora",
    "--dataset",
    "self-cognition",
    "lmforge-instruct-mini",
    "--model_name",
    "小锻",
    "lmforge-bot",
    "--model_author",
    "lmforge",
    "lmforge",
    "--lora_rank",
    "8",
    "--lora_alpha",
    "32",
    "--learning_rate",
    "1e-3",
    "--warmup_ratio",
    "0.05",
    "--per_device_train_batch_size",
    "4",
    "--gradient_accumulation_steps",
    "1",
    "--max_steps",
    "70",
    "--logging_steps",
    "10",
    "--save_steps",
    "70",
    "--padding_free",
    "true",
    "--add_version",
    "false",
]


# identity questions (right when the answer names 小锻/lmforge-bot/lmforge, read from the run's args.json) and 20
# general-knowledge multiple-choice questions (English and Chinese) scored by log-likelihood: two model loads' worth
# of time, not a second fine-tune
EVAL_FLAGS = ["--eval_dataset", "lmforge_identity", "lmforge_mcq", "--max_new_tokens", "32", "--torch_dtype", "float32"]


def answers(model_dir: Path, adapters: list[str]) -> list[str]:
    from lmforge.infer.engine import SamplingConfig
    from lmforge.infer.engines import load_engine

    engine = load_engine(model_dir, base_adapters=adapters, dtype="float32", max_batch_size=len(QUESTIONS))
    convs = [[{"role": "user", "content": q}] for q in QUESTIONS]
    return [c.text for c in engine.chat(convs, SamplingConfig(max_new_tokens=48))]


def main() -> int:
    from lmforge.cli import main as cli
    from lmforge.models.loader import resolve_model_dir

    t0 = time.perf_counter()
    print("[demo] preparing the embedded default model (SmolLM2-135M-Instruct, converted once from GGUF)")
    model_dir = resolve_model_dir(None)
    before = answers(model_dir, [])
    out = Path(tempfile.mkdtemp(prefix="lmforge-demo-"))
    print(f"[demo] fine-tuning with: lmforge sft {' '.join(TRAIN_FLAGS)} --output_dir {out}")
    t1 = time.perf_counter()
    code = cli(["sft", *TRAIN_FLAGS, "--output_dir", str(out)])
    if code:
        return code
    train_s = time.perf_counter() - t1
    ckpt = max(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    after = answers(model_dir, [str(ckpt)])
    print(f"\n[demo] training took {train_s:.0f} s; checkpoint: {ckpt}\n")
    for q, b, a in zip(QUESTIONS, before, after):
        print(f"Q: {q}")
        print(textwrap.indent(textwrap.fill(b, 100), "  base       | "))
        print(textwrap.indent(textwrap.fill(a, 100), "  fine-tuned | "))
        print()
    eval_flags = [
        "--adapters",
        str(ckpt),
        "--compare_base",
        "true",
        *EVAL_FLAGS,
        "--eval_output_dir",
        str(out / "eval"),
    ]
    print(f"[demo] scoring base and fine-tuned side by side: lmforge eval {' '.join(eval_flags)}")
    code = cli(["eval", *eval_flags])
    if code:
        return code
    print(f"[demo] done in {time.perf_counter() - t0:.0f} s. Try it yourself:")
    print("  .venv/bin/lmforge check --dataset self-cognition --model_name 小锻 lmforge-bot --model_author lmforge")
    return 0


if __name__ == "__main__":
    sys.exit(main())
