"""One thinking policy on Qwen3's real template: --enable_thinking (flag and per request), the empty think block
and --loss_scale ignore_empty_think, and reasoning split from the answer."""

from __future__ import annotations

from lmforge.infer.frontend import split_reasoning
from lmforge.templates import get_template
from lmforge.templates.encode import IGNORE, ChatTemplate

CONV = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]


def _trained(tpl: ChatTemplate) -> str:
    enc = tpl.encode(CONV)
    return tpl.tokenizer.decode([t for t, lab in zip(enc.input_ids, enc.labels) if lab != IGNORE])


def test_empty_think_block_and_ignore_empty_think(qwen_tok):
    # the jinja template renders `<think>\n\n</think>\n\n` before an answer given without reasoning
    auto = ChatTemplate(qwen_tok, get_template("auto"))
    assert "<think>\n\n</think>\n\nHello!" in auto.render(CONV)
    assert _trained(auto).startswith("<think>")  # a template that declares nothing trains what it renders
    ignoring = ChatTemplate(qwen_tok, get_template("auto"), loss_scale="ignore_empty_think")
    assert _trained(ignoring) == "Hello!<|im_end|>"
    assert _trained(ChatTemplate(qwen_tok, get_template("qwen3"))) == "Hello!<|im_end|>"  # the family knows
    with_reasoning = [CONV[0], {"role": "assistant", "content": "Hello!", "reasoning_content": "Greet back."}]
    enc = ignoring.encode(with_reasoning)  # real reasoning is trained
    trained = qwen_tok.decode([t for t, lab in zip(enc.input_ids, enc.labels) if lab != IGNORE])
    assert trained.startswith("<think>\nGreet back.\n</think>")


def test_enable_thinking_default_and_per_request(qwen_tok):
    off = ChatTemplate(qwen_tok, get_template("qwen3"), enable_thinking=False)
    ask = CONV[:1]
    assert off.render(ask, add_generation_prompt=True).endswith("<think>\n\n</think>\n\n")
    on = ChatTemplate(qwen_tok, get_template("qwen3"))
    assert on.render(ask, add_generation_prompt=True).endswith("<|im_start|>assistant\n")
    # a request's chat_template_kwargs win over the flag
    assert off.render(ask, add_generation_prompt=True, enable_thinking=True).endswith("<|im_start|>assistant\n")


def test_split_reasoning():
    assert split_reasoning("<think>\nplan\n</think>\n\nanswer") == ("plan", "answer")
    assert split_reasoning("no thinking") == (None, "no thinking")


def test_deploy_flag_reaches_the_served_prompt(tiny_qwen3):
    from lmforge.args import parse_flags
    from lmforge.cli import COMMANDS
    from lmforge.serve.run import build_state

    state = build_state(
        parse_flags(["--model", str(tiny_qwen3), "--enable_thinking", "false"], COMMANDS["deploy"].groups)
    )
    text = state.engine.frontend.tokenizer.decode(state.engine.frontend.prompt_ids(CONV[:1]))
    assert text.endswith("<think>\n\n</think>\n\n")


def test_exported_template_carries_the_chosen_thinking_default(tiny_qwen3, tmp_path):
    from types import SimpleNamespace

    from transformers import AutoTokenizer

    from lmforge.args import ModelArgs, TemplateArgs
    from lmforge.export.merge import write_companions
    from lmforge.models.setup import setup_tokenizer

    ask = CONV[:1]
    for choice, tail in ((False, "<think>\n\n</think>\n\n"), (True, "<|im_start|>assistant\n")):
        setup = setup_tokenizer(ModelArgs(model=str(tiny_qwen3)), TemplateArgs(enable_thinking=choice))
        out = tmp_path / str(choice)
        write_companions(out, setup, SimpleNamespace(saved=None), None, {})  # what `export --merge_lora` writes
        exported = AutoTokenizer.from_pretrained(out)  # as vLLM or transformers load the merged model
        assert exported.apply_chat_template(ask, add_generation_prompt=True, tokenize=False).endswith(tail)
        flipped = exported.apply_chat_template(
            ask, add_generation_prompt=True, tokenize=False, enable_thinking=not choice
        )
        assert not flipped.endswith(tail)  # a request's own setting still wins
