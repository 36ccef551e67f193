"""The quality report of a quantized or GGUF export: the exported model against the unquantized one on held-out
rows encoded with the run's template. Perplexity before/after (on the tokens that carry loss), top-1 agreement and
mean |logit drift| on those tokens, greedy answers side by side, size on disk and time taken. Printed, and saved as
`quant_report.json` and `quant_report.md` in the output folder."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt")


@dataclass
class CheckRows:
    """What the report runs on: encoded rows (ids, labels) and generation prompts (ids, text)."""

    encoded: list[tuple[list[int], list[int]]]
    prompts: list[tuple[list[int], str]]
    source: str  # where the rows came from, said in the report
    stop_ids: list[int] = field(default_factory=list)
    max_new_tokens: int = 16


@dataclass
class Side:
    """One model's outputs on the rows: label-position logits per row, summed NLL, greedy answers."""

    logits: list[Any]
    nll: float
    tokens: int
    answers: list[str]


def weights_size(path: Path) -> int:
    """Bytes of weight files in a model folder (or one file)."""
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and f.name.endswith(WEIGHT_SUFFIXES))


def run_side(model: Any, tokenizer: Any, rows: CheckRows) -> Side:
    """Forward every row once (no padding: exact per-row logits) and answer every prompt greedily."""
    import torch

    model.eval()
    device = next(model.parameters()).device
    side = Side([], 0.0, 0, [])
    with torch.inference_mode():
        for ids, labels in rows.encoded:
            _score(side, model(torch.tensor([ids], device=device)).logits[0, :-1].float().cpu(), labels)
        side.answers = [_greedy(model, tokenizer, ids, rows, device) for ids, _ in rows.prompts]
    return side


def run_side_llamacpp(gguf: Path, tokenizer: Any, rows: CheckRows) -> Side:
    """The same measures on a GGUF as llama.cpp itself runs it: every row's logits from one eval (`logits_all`),
    greedy answers from llama.cpp's own sampler (temperature 0 is its greedy sampler; repeat penalty 1 is off).
    Not through lmforge.infer: export must not depend on the engines (a package cycle through args)."""
    import os

    import torch

    from lmforge.thirdparty import llama_without_extra_buffers

    longest = max([len(i) for i, _ in rows.encoded] + [len(i) + rows.max_new_tokens for i, _ in rows.prompts])
    threads = int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1)
    llama = llama_without_extra_buffers(
        model_path=str(gguf), n_ctx=longest + 8, logits_all=True, n_threads=threads, seed=0, verbose=False
    )
    side = Side([], 0.0, 0, [])
    for ids, labels in rows.encoded:
        llama.reset()
        llama.eval(ids)
        _score(side, torch.from_numpy(llama.scores[: len(ids) - 1].copy()).float(), labels)
    stops = set(rows.stop_ids)
    for ids, _ in rows.prompts:
        made: list[int] = []
        for tok in llama.generate(list(ids), reset=True, temp=0.0, repeat_penalty=1.0):
            made.append(tok)
            if tok in stops or len(made) >= rows.max_new_tokens:
                break
        side.answers.append(tokenizer.decode(made, skip_special_tokens=True))
    return side


def _score(side: Side, logits: Any, labels: list[int]) -> None:
    """Add one row: the logits at the positions that carry loss, and their summed NLL."""
    import torch
    import torch.nn.functional as F

    target = torch.tensor(labels[1:])
    keep = target != -100
    picked = logits[keep]
    side.logits.append(picked)
    side.nll += F.cross_entropy(picked, target[keep], reduction="sum").item()
    side.tokens += int(keep.sum())


def _greedy(model: Any, tokenizer: Any, ids: list[int], rows: CheckRows, device: Any) -> str:
    import torch

    x = torch.tensor([ids], device=device)
    out = model.generate(
        x,
        attention_mask=torch.ones_like(x),
        max_new_tokens=rows.max_new_tokens,
        do_sample=False,
        eos_token_id=rows.stop_ids or None,
        pad_token_id=tokenizer.pad_token_id,
    )
    return tokenizer.decode(out[0, len(ids) :], skip_special_tokens=True)


def compare(before: Side, after: Side, rows: CheckRows) -> dict[str, Any]:
    """The numbers of the report (sizes and times are added by the caller)."""
    agree = total = 0
    drift_sum, drift_max = 0.0, 0.0
    for a, b in zip(before.logits, after.logits):
        v = min(a.shape[-1], b.shape[-1])  # a GGUF's vocabulary may be padded
        a, b = a[:, :v], b[:, :v]
        agree += int((a.argmax(-1) == b.argmax(-1)).sum())
        total += a.shape[0]
        diff = (a - b).abs()
        drift_sum += float(diff.mean(-1).sum())
        drift_max = max(drift_max, float(diff.max()) if diff.numel() else 0.0)
    ppl_before = math.exp(before.nll / max(before.tokens, 1))
    ppl_after = math.exp(after.nll / max(after.tokens, 1))
    return {
        "rows": len(rows.encoded),
        "rows_from": rows.source,
        "tokens": total,
        "perplexity": {"before": ppl_before, "after": ppl_after, "ratio": ppl_after / ppl_before},
        "top1_agreement": agree / max(total, 1),
        "mean_logit_drift": drift_sum / max(total, 1),
        "max_logit_drift": drift_max,
        "greedy": [
            {"prompt": text, "before": x, "after": y, "same": x == y}
            for (_, text), x, y in zip(rows.prompts, before.answers, after.answers)
        ],
    }


def save_report(report: dict[str, Any], out: Path) -> None:
    """quant_report.json and quant_report.md into `out`, and a short summary on stdout."""
    (out / "quant_report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    (out / "quant_report.md").write_text(markdown(report))
    p, s = report["perplexity"], report["size_bytes"]
    print(
        f"[lmforge] quality ({report['export']} via {report.get('reader', 'transformers')}, {report['rows']} rows, "
        f"{report['tokens']} tokens): "
        f"perplexity {p['before']:.3f} -> {p['after']:.3f} (x{p['ratio']:.3f}), "
        f"top-1 agreement {report['top1_agreement']:.3f}, mean |logit drift| {report['mean_logit_drift']:.4f}, "
        f"size {_mb(s['before'])} -> {_mb(s['after'])}, {report['seconds']['export']:.1f} s"
    )
    same = sum(g["same"] for g in report["greedy"])
    print(f"[lmforge] greedy answers equal on {same}/{len(report['greedy'])} prompts; report: {out}/quant_report.md")


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def markdown(r: dict[str, Any]) -> str:
    p, s, t = r["perplexity"], r["size_bytes"], r["seconds"]
    lines = [
        f"# Quality report: {r['export']}",
        "",
        f"Source: `{r['source']}`. Rows: {r['rows']} ({r['rows_from']}), {r['tokens']} tokens carrying loss. "
        f"The export was read back through {r.get('reader', 'transformers')}.",
        "",
        "| measure | before | after |",
        "|---|---|---|",
        f"| perplexity | {p['before']:.4f} | {p['after']:.4f} (x{p['ratio']:.4f}) |",
        f"| size on disk | {_mb(s['before'])} | {_mb(s['after'])} |",
        f"| top-1 agreement | | {r['top1_agreement']:.4f} |",
        f"| mean / max abs logit drift | | {r['mean_logit_drift']:.4f} / {r['max_logit_drift']:.4f} |",
        f"| time | | export {t['export']:.1f} s, check {t['check']:.1f} s |",
        "",
        "## Greedy answers",
        "",
    ]
    for g in r["greedy"]:
        mark = "same" if g["same"] else "differs"
        lines += [f"**{g['prompt']}** ({mark})", "", f"- before: {g['before']!r}", f"- after: {g['after']!r}", ""]
    return "\n".join(lines)
