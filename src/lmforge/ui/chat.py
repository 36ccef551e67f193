"""`lmforge app`: a Gradio chat page (system prompt, streaming answers, regenerate, clear) on the PyTorch engine."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from lmforge.infer.engine import PtEngine, SamplingConfig


def _sampling(args: Any) -> SamplingConfig:
    g = args.generation
    return SamplingConfig(
        max_new_tokens=g.max_new_tokens or 512,
        temperature=g.temperature or 0.0,
        top_p=g.top_p or 1.0,
        top_k=g.top_k or 0,
        repetition_penalty=g.repetition_penalty or 1.0,
        stop=list(g.stop_words),
    )


def build_page(engine: PtEngine, cfg: SamplingConfig, title: str) -> Any:
    import gradio as gr

    default_system = engine.template.system or ""

    def conversation(history: list[dict], system: str) -> list[dict]:
        msgs = [{"role": m["role"], "content": m["content"]} for m in history]
        return ([{"role": "system", "content": system}] if system.strip() else []) + msgs

    def answer(history: list[dict], system: str) -> Iterator[list[dict]]:
        history = [*history, {"role": "assistant", "content": ""}]
        for piece in engine.stream(conversation(history[:-1], system), cfg):
            history[-1] = {"role": "assistant", "content": history[-1]["content"] + piece}
            yield history
        yield history

    def send(message: str, history: list[dict], system: str) -> Iterator[tuple[str, list[dict]]]:
        if not message.strip():
            yield "", history
            return
        history = [*history, {"role": "user", "content": message}]
        for h in answer(history, system):
            yield "", h

    def regenerate(history: list[dict], system: str) -> Iterator[list[dict]]:
        while history and history[-1]["role"] == "assistant":
            history = history[:-1]
        if not history:
            yield history
            return
        yield from answer(history, system)

    with gr.Blocks(title=title) as page:
        gr.Markdown(f"## {title}")
        system = gr.Textbox(value=default_system, label="System prompt", lines=2, elem_id="system")
        chat = gr.Chatbot(label="Chat", elem_id="chatbot", height=420)
        box = gr.Textbox(placeholder="Ask something and press Enter", label="Message", elem_id="message")
        with gr.Row():
            send_btn = gr.Button("Send", variant="primary", elem_id="send")
            regen_btn = gr.Button("Regenerate", elem_id="regenerate")
            clear_btn = gr.Button("Clear", elem_id="clear")
        running = [
            box.submit(send, [box, chat, system], [box, chat]),
            send_btn.click(send, [box, chat, system], [box, chat]),
            regen_btn.click(regenerate, [chat, system], chat),
        ]
        # Clear also stops an answer still streaming (else its next chunk would bring the history back)
        clear_btn.click(lambda: [], None, chat, cancels=running)
    return page


def run_app(args: Any) -> int:
    from lmforge.infer.run import build_engine
    from lmforge.serve.run import check_port

    a = args.app
    check_port(a.server_name, a.server_port)
    args.infer = _InferShim(a.infer_backend, a.load_args)
    engine = build_engine(args)
    title = a.studio_title or "lmforge chat"
    page = build_page(engine, _sampling(args), title)
    print(f"[lmforge] chat page at http://{a.server_name}:{a.server_port}")
    page.queue().launch(server_name=a.server_name, server_port=a.server_port, share=a.share, show_error=True)
    return 0


class _InferShim:
    """build_engine reads these InferArgs fields; the app has no batch mode."""

    def __init__(self, backend: str, load_args: bool):
        self.infer_backend, self.load_args, self.merge_lora, self.max_batch_size = backend, load_args, False, 1
