"""Media in chat requests for a vision-language or audio model: OpenAI `image_url` parts, vLLM's `video_url` parts
(data URLs, http(s) URLs, and local files only under `--allowed_local_media_path`, vLLM's flag) and OpenAI
`input_audio` parts (`{"data": base64, "format": "wav" | "mp3"}`) -> a MediaPrompt. A kind the model does not take,
or anything else, is a 400 naming the part."""

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


_PARTS = {"image": "image_url", "video": "video_url", "audio": "input_audio"}  # what a family's kinds accept


def _sources(state: ServeState, body: ChatRequest) -> tuple[list[dict], dict[str, list[str]]] | JSONResponse:
    """Messages with a `<image>` / `<video>` / `<audio>` tag where each media part was, and the checked sources
    of each kind in order. A kind the model does not take is a 400 naming the part and what the model takes."""
    family = state.engine.frontend.template.family
    msgs, found = [], {kind: [] for kind in TAG}
    for i, m in enumerate(body.messages):
        msg = m.plain()
        if isinstance(m.content, list):
            text = []
            for j, part in enumerate(m.content):
                where = f"messages.{i}.content.{j}"
                media = part_source(part) if part.get("type") not in ("text", "refusal") else None
                if media is None:
                    text.append(str(part.get("text", part.get("refusal", ""))))
                    continue
                kind, src = media
                if kind not in family.kinds:
                    takes = " / ".join(_PARTS[k] for k in family.kinds)
                    msg_ = f"{where}: '{part.get('type')}' parts are not supported by this model (it takes {takes})"
                    return err(400, msg_, param=where)
                if not src:
                    return err(400, f"{where}: a {kind} part without a url or data", param=where)
                if not src.startswith(("data:", "http://", "https://")):
                    checked = _local(src, state.allowed_media_path, where)
                    if not isinstance(checked, str):
                        return checked
                    src = checked
                found[kind].append(src)
                text.append(TAG[kind])
            msg["content"] = "".join(text)
        msgs.append(msg)
    return msgs, found


def media_chat_prompt(state: ServeState, body: ChatRequest) -> Any:
    """The MediaPrompt of a chat request with images, videos or audio, or a 400."""
    from lmforge.data.converters import RowError
    from lmforge.infer.media import media_prompt
    from lmforge.multimodal.media import resolve
    from lmforge.templates.encode import EncodeError

    found = _sources(state, body)
    if not isinstance(found, tuple):
        return found
    msgs, sources = found
    try:
        checked = {kind: [resolve(src, f"{kind} {k}", None, kind) for k, src in enumerate(srcs)]
                   for kind, srcs in sources.items()}  # fmt: skip
        return media_prompt(
            state.engine.frontend,
            msgs,
            checked["image"],
            checked["video"],
            audios=checked["audio"],
            tools=body.tools,
            **(body.chat_template_kwargs or {}),
        )
    except (RowError, EncodeError) as e:
        return err(400, f"messages: {e}")
