"""Our input_ids must equal the tokenizer's own apply_chat_template, token for token; labels cover exactly the
assistant spans."""

from __future__ import annotations

import pytest

from lmforge.templates import get_template
from lmforge.templates.encode import IGNORE, ChatTemplate, EncodeError
from tests.templates.conversations import TOOLS, TRAINABLE, WITH_TOOLS


def _ref_ids(tok, msgs, tools=None):
    out = tok.apply_chat_template(msgs, tools=tools, tokenize=True)
    return out["input_ids"] if hasattr(out, "keys") else out


def _trained_text(tok, enc):
    return tok.decode([t for t, lab in zip(enc.input_ids, enc.labels) if lab != IGNORE])


@pytest.mark.parametrize("k", range(len(TRAINABLE)))
def test_qwen3_ids_equal_apply_chat_template(qwen_tok, k):
    msgs = TRAINABLE[k]
    tools = TOOLS if k in WITH_TOOLS else None
    tpl = ChatTemplate(qwen_tok, get_template("qwen3"))
    enc = tpl.encode(msgs, tools=tools)
    assert enc.input_ids == _ref_ids(qwen_tok, msgs, tools)
    trained = _trained_text(qwen_tok, enc)
    # every trained span ends its turn; the final answer is always trained
    assert trained.count("<|im_end|>") == sum(m["role"] == "assistant" for m in msgs)
    final = msgs[-1]["content"].split("</think>")[-1].strip()
    assert final in trained
    # no user, system or tool text, and never an empty think block
    assert "<|im_start|>" not in trained
    assert "<think>\n\n</think>" not in trained


@pytest.mark.parametrize("k", range(len(TRAINABLE)))
def test_smollm2_ids_equal_apply_chat_template(smol_tok, k):
    msgs = [{kk: v for kk, v in m.items() if kk not in ("tool_calls", "reasoning_content")} for m in TRAINABLE[k]]
    msgs = [m for m in msgs if m["role"] != "tool"]
    tpl = ChatTemplate(smol_tok, get_template("smollm2"))
    enc = tpl.encode(msgs)
    assert enc.input_ids == _ref_ids(smol_tok, msgs)
    trained = _trained_text(smol_tok, enc)
    expected = "".join(m["content"] + "<|im_end|>" for m in msgs if m["role"] == "assistant")
    # a token merging the prompt's newline with the answer's leading spaces is trained (it starts the answer)
    assert trained == expected or trained.lstrip("\n") == expected


def test_qwen3_history_thinking_stripped_and_untrained(qwen_tok):
    msgs = [
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "<think>\nold\n</think>\n\na1"},
        {"role": "user", "content": "q2"},
        {"role": "assistant", "content": "<think>\nnew\n</think>\n\na2"},
    ]
    enc = ChatTemplate(qwen_tok, get_template("qwen3")).encode(msgs)
    full = qwen_tok.decode(enc.input_ids)
    trained = _trained_text(qwen_tok, enc)
    assert "old" not in full  # the official template drops history reasoning
    assert trained == "a1<|im_end|><think>\nnew\n</think>\n\na2<|im_end|>"


def test_qwen3_empty_think_rendered_but_not_trained(qwen_tok):
    msgs = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "plain"}]
    enc = ChatTemplate(qwen_tok, get_template("qwen3")).encode(msgs)
    assert "<think>\n\n</think>\n\nplain" in qwen_tok.decode(enc.input_ids)
    assert _trained_text(qwen_tok, enc) == "plain<|im_end|>"


def test_enable_thinking_controls_the_prompt(qwen_tok):
    msgs = [{"role": "user", "content": "q"}]
    off = ChatTemplate(qwen_tok, get_template("qwen3"), enable_thinking=False).prompt_ids(msgs)
    on = ChatTemplate(qwen_tok, get_template("qwen3"), enable_thinking=True).prompt_ids(msgs)
    assert qwen_tok.decode(off).endswith("<think>\n\n</think>\n\n")
    assert qwen_tok.decode(on).endswith("<|im_start|>assistant\n")


def test_system_flag_and_truncation(smol_tok):
    msgs = [{"role": "user", "content": "hello " * 30}, {"role": "assistant", "content": "short"}]
    tpl = ChatTemplate(smol_tok, get_template("smollm2"), system="Be brief.")
    enc = tpl.encode(msgs)
    assert "Be brief." in smol_tok.decode(enc.input_ids)
    n = len(enc.input_ids)
    with pytest.raises(EncodeError, match="max_length"):
        ChatTemplate(smol_tok, get_template("smollm2"), system="Be brief.", max_length=n - 1).encode(msgs)
    left = ChatTemplate(
        smol_tok, get_template("smollm2"), system="Be brief.", max_length=n - 5, truncation_strategy="left"
    ).encode(msgs)
    assert left.input_ids == enc.input_ids[5:] and left.truncated
    right = ChatTemplate(smol_tok, get_template("smollm2"), max_length=n - 20, truncation_strategy="right")
    with pytest.raises(EncodeError, match="no trained tokens"):  # the answer was cut away
        right.encode(msgs)


def test_loss_scale_last_round_and_all(smol_tok):
    msgs = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
        {"role": "assistant", "content": "d"},
    ]
    last = ChatTemplate(smol_tok, get_template("smollm2"), loss_scale="last_round").encode(msgs)
    assert _trained_text(smol_tok, last) == "d<|im_end|>"
    everything = ChatTemplate(smol_tok, get_template("smollm2"), loss_scale="all").encode(msgs)
    assert everything.labels == everything.input_ids
