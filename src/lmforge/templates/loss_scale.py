"""`--loss_scale NAME`: which assistant turns of a conversation carry loss. An entry is `fn(messages, i) -> bool`
for assistant message i; a message's own `"loss": true/false` wins over it. `all` (every token, the prompt too, as
`lmforge pt` trains) is not a per-turn rule and is handled by the encoder itself. `ignore_empty_think` trains every
assistant turn but not a rendered empty `<think></think>` block at its start, whatever the template (ms-swift's
name; templates registered as thinking families, such as qwen3, never train that block anyway)."""

from __future__ import annotations

from lmforge.registry import Registry

LOSS_SCALES: Registry = Registry("loss scale", "--loss_scale")


def _last_user(messages: list[dict]) -> int:
    return max((i for i, m in enumerate(messages) if m["role"] == "user"), default=-1)


LOSS_SCALES.register("default", lambda messages, i: True)  # every assistant turn
LOSS_SCALES.register("last_round", lambda messages, i: i > _last_user(messages))  # the answer to the last question
LOSS_SCALES.register("ignore_empty_think", lambda messages, i: True)  # the encoder drops the empty block
