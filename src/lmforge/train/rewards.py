"""GRPO/PPO reward functions: a dict filled by a decorator; plug-ins add their own the same way.

A reward function takes the sampled `completions` (text) and every extra dataset column as keyword lists (e.g.
`solution`), and returns one float per completion:

    @register_reward("brevity")
    def brevity(completions: list[str], **kwargs) -> list[float]:
        return [-len(c) / 100 for c in completions]
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from lmforge.errors import UserError
from lmforge.registry import Registry

RewardFn = Callable[..., list[float]]
REWARDS: Registry = Registry("reward function", "--reward_funcs")
register_reward = REWARDS.register


def _text(c: Any) -> str:
    """trl passes conversational completions as [{"role": "assistant", "content": ...}]."""
    if isinstance(c, list):
        return "".join(m.get("content", "") for m in c if isinstance(m, dict))
    return str(c)


def _final_answer(text: str) -> str:
    """The part that counts: <answer>...</answer>, else \\boxed{...}, else the last number, else the text."""
    for pattern in (r"<answer>(.*?)</answer>", r"\\boxed\{([^{}]*)\}"):
        m = re.findall(pattern, text, flags=re.S)
        if m:
            return m[-1].strip()
    nums = re.findall(r"-?\d+(?:\.\d+)?", text.replace(",", ""))
    return nums[-1] if nums else text.strip()


def _same(a: str, b: str) -> bool:
    a, b = _final_answer(a), _final_answer(b)
    try:
        return math.isclose(float(a), float(b), rel_tol=1e-6)
    except ValueError:
        return a.strip().lower() == b.strip().lower()


@register_reward("accuracy")
def accuracy(completions: list, solution: list[str] | None = None, **_: Any) -> list[float]:
    if solution is None:
        raise UserError("reward 'accuracy' needs a 'solution' column in the dataset")
    return [1.0 if _same(_text(c), str(s)) else 0.0 for c, s in zip(completions, solution)]


FORMAT = re.compile(r"^<think>.*?</think>\s*<answer>.*?</answer>$", re.S)


@register_reward("format")
def format_reward(completions: list, **_: Any) -> list[float]:
    return [1.0 if FORMAT.match(_text(c).strip()) else 0.0 for c in completions]


@register_reward("cosine")
def cosine(completions: list, solution: list[str] | None = None, max_len: int = 1000, **_: Any) -> list[float]:
    """Correct answers earn more when short, wrong ones lose less when long (length-scaled accuracy)."""
    acc = accuracy(completions, solution)
    out = []
    for c, ok in zip(completions, acc):
        progress = min(len(_text(c)) / max_len, 1.0)
        lo, hi = (0.5, 1.0) if ok else (-1.0, -0.5)
        out.append(lo + 0.5 * (hi - lo) * (1 + math.cos(progress * math.pi)))
    return out


@register_reward("repetition")
def repetition(completions: list, n: int = 3, max_penalty: float = -1.0, **_: Any) -> list[float]:
    """Penalty growing with the share of repeated word n-grams."""
    out = []
    for c in completions:
        words = _text(c).split()
        grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
        out.append(0.0 if not grams else (1 - len(set(grams)) / len(grams)) * max_penalty)
    return out


def soft_overlong(max_length: int, cache_length: int) -> RewardFn:
    """0 up to max_length - cache_length tokens' worth of characters, then down linearly to -1 at max_length."""

    def reward(completions: list, completion_ids: list | None = None, **_: Any) -> list[float]:
        lengths = [len(ids) for ids in completion_ids] if completion_ids else [len(_text(c)) // 4 for c in completions]
        start = max_length - cache_length
        return [0.0 if n <= start else max(-1.0, (start - n) / cache_length) for n in lengths]

    return reward


def resolve_rewards(names: list[str], rlhf: Any) -> list[RewardFn]:
    if not names:
        raise UserError("GRPO needs --reward_funcs", hint=f"built-in: {', '.join(sorted([*REWARDS, 'soft_overlong']))}")
    fns = []
    for name in names:
        if name == "soft_overlong":
            max_len = rlhf.soft_max_length or rlhf.max_completion_length
            fn = soft_overlong(max_len, rlhf.soft_cache_length or max(1, max_len // 4))
        elif name in REWARDS:
            fn = REWARDS[name]
        else:
            known = ", ".join(sorted([*REWARDS, "soft_overlong"]))
            raise UserError(
                f"unknown reward function '{name}'; known: {known}", hint="register your own with --external_plugins"
            )
        fns.append(_named(fn, name))
    return fns


def _named(fn: RewardFn, name: str) -> RewardFn:
    """trl logs each reward under the function's __name__."""

    def wrapped(completions: list, **kw: Any) -> list[float]:
        return fn(completions, **kw)

    wrapped.__name__ = name
    return wrapped
