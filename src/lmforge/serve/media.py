"""Images in chat requests for a vision-language model: OpenAI `image_url` parts (data URLs, http(s) URLs, and
local files only under `--allowed_local_media_path`, vLLM's flag) -> a MediaPrompt. Anything else is a 400 naming
the part."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmforge.multimodal.parts import TAG, part_source
from lmforge.serve.state import err

if TYPE_CHECKING:
    from fastapi.responses import JSONResponse

    from lmforge.serve.protocol import ChatRequest
    from lmforge.serve.state import ServeState


def _local(src: str, allowed: str | None, where: str) -> str | JSONResponse:
    path = Path(src.removeprefix("file://")).expanduser()
    if allowed is None:
        return err(
            400,
            f"{where}: local files are not served; send a data URL (or start the server with "
            "--allowed_local_media_path DIR)",
            param=where,
        )
    root = Path(allowed).resolve()
    full = path.resolve()
    if full != root and root not in full.parents:
        return err(400, f"{where}: {src} is outside --allowed_local_media_path {allowed}", param=where)
    return str(full)


def _sources(state: ServeState, body: ChatRequest) -> tuple[list[dict], list[str]] | JSONResponse:
    """Messages with a `<image>` tag where each image part was, and the checked image sources in order."""
    msgs, images = [], []
    for i, m in enumerate(body.messages):
        msg = m.plain()
        if isinstance(m.content, list):
            text = []
            for j, part in enumerate(m.content):
                where = f"messages.{i}.content.{j}"
                found = part_source(part) if part.get("type") not in ("text", "refusal") else None
                if found is None:
                    text.append(str(part.get("text", part.get("refusal", ""))))
                    continue
                kind, src = found
                if kind != "image":
                    return err(400, f"{where}: '{part.get('type')}' parts are not supported by this model", param=where)
                if not src:
                    return err(400, f"{where}: an image part without a url", param=where)
                if not src.startswith(("data:", "http://", "https://")):
                    checked = _local(src, state.allowed_media_path, where)
                    if not isinstance(checked, str):
                        return checked
                    src = checked
                images.append(src)
                text.append(TAG["image"])
            msg["content"] = "".join(text)
        msgs.append(msg)
    return msgs, images


def media_chat_prompt(state: ServeState, body: ChatRequest) -> Any:
    """The MediaPrompt of a chat request with images, or a 400."""
    from lmforge.data.converters import RowError
    from lmforge.infer.media import media_prompt
    from lmforge.multimodal.media import resolve
    from lmforge.templates.encode import EncodeError

    found = _sources(state, body)
    if not isinstance(found, tuple):
        return found
    msgs, images = found
    try:
        checked = [resolve(src, f"image {k}", None) for k, src in enumerate(images)]
        return media_prompt(state.engine.frontend, msgs, checked, tools=body.tools, **(body.chat_template_kwargs or {}))
    except (RowError, EncodeError) as e:
        return err(400, f"messages: {e}")
