"""Does alignment move the embedded SmolLM2-135M-Instruct the right way? Two short runs, before/after figures:

- DPO (LoRA) on 32 of the 40 pairs of the shipped `lmforge-dpo-mini` set; the log-probability margin
  logp(chosen) - logp(rejected) on the 8 held-out pairs, before and after (and the DPO reward margin, beta x its
  change);
- GRPO (LoRA) with the `format` reward and a system prompt asking for <think>/<answer>: a 135M model never hits
  that exact format by itself (reward 0 everywhere, so no signal), so a short SFT warm-up on 8 formatted answers
  comes first (as in the usual cold-start recipe); GRPO then continues that adapter. Mean reward of the first and
  the last logged GRPO steps.

Run: .venv/bin/python bench/rlhf_effect.py [--dpo_steps 24] [--grpo_steps 12]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

SYSTEM = (
    "Think first, then answer. Always reply exactly in this format: <think>your reasoning</think>"
    "<answer>your answer</answer>"
)


def margins(model_dir: Path, adapters: list[str], rows: list[dict]) -> list[float]:
    import torch

    from lmforge.args import ModelArgs, TemplateArgs
    from lmforge.infer.loading import load_for_inference
    from lmforge.models.setup import setup_tokenizer

    setup = setup_tokenizer(ModelArgs(model=str(model_dir)), TemplateArgs())
    model = load_for_inference(model_dir, tuple(adapters), dtype=torch.float32)
    out = []
    for row in rows:
        prompt = setup.template.prompt_ids(row["messages"][:-1])
        scores = []
        for answer in (row["messages"][-1]["content"], row["rejected_response"]):
            ids = setup.tokenizer(answer + setup.template.end_of_turn, add_special_tokens=False)["input_ids"]
            x = torch.tensor([prompt + ids])
            with torch.no_grad():
                logp = torch.log_softmax(model(x).logits[0, len(prompt) - 1 : -1].float(), -1)
            scores.append(float(logp.gather(-1, torch.tensor(ids)[:, None]).sum()))
        out.append(scores[0] - scores[1])
    return out


def dpo(cli, base: Path, train: list[dict], held: list[dict], tmp: str, steps: int) -> None:
    f = Path(tmp) / "train.jsonl"
    f.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in train))
    before = margins(base, [], held)
    assert (
        cli(
            [
                "rlhf",
                "--rlhf_type",
                "dpo",
                "--dataset",
                str(f),
                "--max_steps",
                str(steps),
                "--per_device_train_batch_size",
                "2",
                "--gradient_accumulation_steps",
                "1",
                "--learning_rate",
                "5e-4",
                "--save_steps",
                str(steps),
                "--logging_steps",
                "4",
                "--output_dir",
                f"{tmp}/dpo",
                "--add_version",
                "false",
                "--report_to",
                "none",
            ]
        )
        == 0
    )
    after = margins(base, [f"{tmp}/dpo/checkpoint-{steps}"], held)
    mb, ma = sum(before) / len(before), sum(after) / len(after)
    print(
        f"\nDPO held-out logp margin (chosen - rejected): before {mb:.2f}, after {ma:.2f}; "
        f"DPO reward margin (beta 0.1): {0.1 * (ma - mb):+.3f}; pairs improved: "
        f"{sum(x > y for x, y in zip(after, before))}/{len(held)}"
    )


def grpo(cli, rows: list[dict], tmp: str, steps: int) -> None:
    warm = Path(tmp) / "warm.jsonl"
    warm.write_text(
        "".join(
            json.dumps(
                {
                    "query": r["messages"][0]["content"],
                    "response": "<think>The user asks: "
                    f"{r['messages'][0]['content']}</think><answer>{r['messages'][1]['content']}"
                    "</answer>",
                },
                ensure_ascii=False,
            )
            + "\n"
            for r in rows[20:28]
        )
    )
    assert (
        cli(
            [
                "sft",
                "--dataset",
                str(warm),
                "--system",
                SYSTEM,
                "--max_steps",
                "6",
                "--per_device_train_batch_size",
                "4",
                "--gradient_accumulation_steps",
                "1",
                "--learning_rate",
                "5e-4",
                "--save_steps",
                "6",
                "--output_dir",
                f"{tmp}/warm",
                "--add_version",
                "false",
                "--report_to",
                "none",
            ]
        )
        == 0
    )
    g = Path(tmp) / "grpo.jsonl"
    qs = [r["messages"][0]["content"] for r in rows[:16]]
    g.write_text("".join(json.dumps({"messages": [{"role": "user", "content": q}]}) + "\n" for q in qs))
    assert (
        cli(
            [
                "rlhf",
                "--rlhf_type",
                "grpo",
                "--adapters",
                f"{tmp}/warm/checkpoint-6",
                "--dataset",
                str(g),
                "--system",
                SYSTEM,
                "--reward_funcs",
                "format",
                "--num_generations",
                "8",
                "--max_completion_length",
                "48",
                "--temperature",
                "1.0",
                "--max_steps",
                str(steps),
                "--per_device_train_batch_size",
                "8",
                "--gradient_accumulation_steps",
                "1",
                "--learning_rate",
                "5e-4",
                "--save_steps",
                str(steps),
                "--logging_steps",
                "1",
                "--output_dir",
                f"{tmp}/grpo",
                "--add_version",
                "false",
                "--report_to",
                "none",
            ]
        )
        == 0
    )
    logs = [json.loads(x) for x in (Path(tmp) / "grpo" / "logging.jsonl").read_text().splitlines()]
    rewards = [x["reward"] for x in logs if "reward" in x]
    k = max(1, len(rewards) // 4)
    print(
        f"GRPO format reward: first {k} steps {sum(rewards[:k]) / k:.3f}, last {k} steps "
        f"{sum(rewards[-k:]) / k:.3f} (per step: {', '.join(f'{r:.2f}' for r in rewards)})"
    )


def main() -> None:
    from lmforge.cli import main as cli
    from lmforge.data.registry import BUILTIN_DIR
    from lmforge.models.loader import resolve_model_dir

    p = argparse.ArgumentParser()
    p.add_argument("--dpo_steps", type=int, default=24)
    p.add_argument("--grpo_steps", type=int, default=10)
    p.add_argument("--skip_dpo", action="store_true")
    a = p.parse_args()
    rows = [json.loads(x) for x in (BUILTIN_DIR / "dpo_mini.jsonl").read_text().splitlines()]
    train, held = rows[:16] + rows[20:36], rows[16:20] + rows[36:]  # held-out: 4 English, 4 Chinese
    with tempfile.TemporaryDirectory() as tmp:
        if not a.skip_dpo:
            dpo(cli, resolve_model_dir(None), train, held, tmp, a.dpo_steps)
        grpo(cli, rows, tmp, a.grpo_steps)


if __name__ == "__main__":
    main()
