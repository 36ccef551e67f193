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


def conversation(history: list[dict]) -> tuple[list[dict], list[str]]:
    """Chatbot history -> model messages and image paths: an uploaded image is its own user message in the chat
    (a file part); it becomes an `<image>` tag in the text of the user turn it belongs to."""
    from lmforge.multimodal.parts import TAG

    msgs: list[dict] = []
    images: list[str] = []
    for m in history:
        parts = m["content"] if isinstance(m["content"], list) else [m["content"]]
        files = [p["file"]["path"] for p in parts if isinstance(p, dict) and p.get("type") == "file"]
        files += [p["path"] for p in parts if isinstance(p, dict) and "path" in p and "type" not in p]
        text = TAG["image"] * len(files) + ("" if files else message_text(m["content"]))
        images += files
        if msgs and msgs[-1]["role"] == m["role"] == "user":  # image then question: one user turn
            msgs[-1]["content"] += text
        else:
            msgs.append({"role": m["role"], "content": text})
    return msgs, images


def chat_panel(
    session: Callable[[], tuple[Engine, SamplingConfig]], default_system: str, media: bool = False
) -> dict[str, Any]:
    """The chat components and their events inside the current gr.Blocks: `app`'s whole page, the web UI's Chat
    tab. `session()` gives the engine and sampling to answer with (the web UI swaps them on loading a checkpoint).
    `media`: a vision-language model, so the page has an image upload."""
    import gradio as gr

    from lmforge.infer.media import media_prompt

    def answer(history: list[dict], system: str) -> Iterator[list[dict]]:
        engine, cfg = session()
        msgs, images = conversation(history)
        # an emptied system box means no system prompt of ours (the template's own default may apply)
        prompt = media_prompt(engine.frontend, msgs, images, system=system.strip() or None)
        history = [*history, {"role": "assistant", "content": ""}]
        for event in engine.stream(prompt, cfg):  # the engine batches with any other open page
            if event.text:
                history[-1] = {"role": "assistant", "content": history[-1]["content"] + event.text}
                yield history
        yield history

    def send(message: str, history: list[dict], system: str, image: str | None = None) -> Iterator[tuple]:
        if not message.strip():
            yield "", history, image
            return
        upload = [{"role": "user", "content": {"path": image}}] if image else []
        history = [*history, *upload, {"role": "user", "content": message}]
        for h in answer(history, system):
            yield "", h, None

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
    # a vision-language model: an image sent with the next message (shown in the chat, an <image> to the model)
    image = gr.Image(type="filepath", label="Image", elem_id="image", height=160, visible=media)
    with gr.Row():
        send_btn = gr.Button("Send", variant="primary", elem_id="send")
        regen_btn = gr.Button("Regenerate", elem_id="regenerate")
        clear_btn = gr.Button("Clear", elem_id="clear")
    running = [
        box.submit(send, [box, chat, system, image], [box, chat, image]),
        send_btn.click(send, [box, chat, system, image], [box, chat, image]),
        regen_btn.click(regenerate, [chat, system], chat),
    ]
    # Clear also stops an answer still streaming (else its next chunk would bring the history back)
    clear_btn.click(lambda: [], None, chat, cancels=running)
    return {"system": system, "chat": chat, "message": box}


def build_page(engine: Engine, cfg: SamplingConfig, title: str) -> Any:
    import gradio as gr

    with gr.Blocks(title=title) as page:
        gr.Markdown(f"## {title}")
        chat_panel(lambda: (engine, cfg), engine.frontend.system or "", media=engine.capabilities.media)
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
