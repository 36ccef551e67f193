"""`lmforge app`: a Gradio chat page (system prompt, streaming answers, regenerate, clear) on the PyTorch engine."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from lmforge.infer.engine import sampling_from_args
from lmforge.net import check_port
from lmforge.runargs import resolve_model

if TYPE_CHECKING:
    from lmforge.args.parser import Args
    from lmforge.infer.engine import Engine, SamplingConfig


def message_text(content: Any) -> str:
    """Gradio's Chatbot hands messages back with content as a list of parts ({"type": "text", "text": ...})."""
    if isinstance(content, str):
        return content
    parts = content if isinstance(content, list) else [content]
    return "".join(str(p.get("text", "")) if isinstance(p, dict) else str(p) for p in parts)


def chat_panel(session: Callable[[], tuple[Engine, SamplingConfig]], default_system: str) -> dict[str, Any]:
    """The chat components and their events inside the current gr.Blocks: `app`'s whole page, the web UI's Chat
    tab. `session()` gives the engine and sampling to answer with (the web UI swaps them on loading a checkpoint)."""
    import gradio as gr

    def answer(history: list[dict], system: str) -> Iterator[list[dict]]:
        engine, cfg = session()
        msgs = [{"role": m["role"], "content": message_text(m["content"])} for m in history]
        # an emptied system box means no system prompt of ours (the template's own default may apply)
        prompt = engine.frontend.prompt_ids(msgs, system=system.strip() or None)
        history = [*history, {"role": "assistant", "content": ""}]
        for event in engine.stream(prompt, cfg):  # the engine batches with any other open page
            if event.text:
                history[-1] = {"role": "assistant", "content": history[-1]["content"] + event.text}
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
    return {"system": system, "chat": chat, "message": box}


def build_page(engine: Engine, cfg: SamplingConfig, title: str) -> Any:
    import gradio as gr

    with gr.Blocks(title=title) as page:
        gr.Markdown(f"## {title}")
        chat_panel(lambda: (engine, cfg), engine.frontend.system or "")
    return page


def run_app(args: Args) -> int:
    from lmforge.infer.engines import engine_from

    a = args.app
    check_port(a.server_name, a.server_port, "--server_port")
    engine = engine_from(resolve_model(args, a.load_args), a.infer_backend, 1, args.backend)
    title = a.studio_title or "lmforge chat"
    page = build_page(engine, sampling_from_args(args.generation, max_new_tokens=512), title)
    print(f"[lmforge] chat page at http://{a.server_name}:{a.server_port} (model on {engine.capabilities.device})")
    page.queue().launch(server_name=a.server_name, server_port=a.server_port, share=a.share, show_error=True)
    return 0
