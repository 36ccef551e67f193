"""Encoding rows with images for a vision-language model, token-exact with the processor.

The processor's own pipeline is: render the chat template (each image becomes `<|vision_start|><|image_pad|>
<|vision_end|>`), run the image processor, repeat each `<|image_pad|>` once per merged patch, tokenize. Here each
`<image>` tag is replaced by that *expanded* placeholder text before rendering, so the whole text-only machinery of
templates/encode.py (rendering, prefix-rendered loss mask, character offsets) runs unchanged and the ids equal the
processor's. Media tokens never carry loss, wherever the tag was.

Resize bounds: --max_pixels/--min_pixels, else ms-swift's MAX_PIXELS/MIN_PIXELS environment variables, else the
folder's preprocessor_config.json; the values used are saved in args.json (`media_run_args`) so infer, deploy and
export resize exactly as training did.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmforge.errors import UserError
from lmforge.multimodal.parts import MEDIA_COLUMNS, TAG
from lmforge.templates.encode import IGNORE, ChatTemplate, Encoded, EncodeError

if TYPE_CHECKING:
    from lmforge.multimodal.families import VLFamily


def pixel_bounds(template_args: Any) -> dict[str, int]:
    """{"shortest_edge": min, "longest_edge": max} from the flags, else MIN_PIXELS/MAX_PIXELS; only those set."""
    from lmforge.multimodal.video import flag_or_env

    out = {}
    for key, flag, env in (("shortest_edge", "min_pixels", "MIN_PIXELS"), ("longest_edge", "max_pixels", "MAX_PIXELS")):
        value = flag_or_env(template_args, flag, env, int, "200704")
        if value is not None:
            out[key] = value
    if len(out) == 2 and out["shortest_edge"] > out["longest_edge"]:
        raise UserError(f"--min_pixels {out['shortest_edge']} > --max_pixels {out['longest_edge']}", hint="swap them")
    return out


class MediaTemplate(ChatTemplate):
    """A ChatTemplate that also takes a row's media: `encode(messages, tools, media={"images": [...], ...})`."""

    takes_media = True

    def __init__(
        self, tokenizer: Any, spec: Any, *, family: VLFamily, processor: Any, sampling: Any, **kwargs: Any
    ) -> None:
        super().__init__(tokenizer, spec, **kwargs)
        self.family = family
        self.processor = processor  # the stock processor: its replace_*_token expands the placeholders
        self.image_processor = getattr(processor, "image_processor", None)
        self.feature_extractor = getattr(processor, "feature_extractor", None)  # audio families
        self.sampling = sampling  # --fps / --max_frames (multimodal/video.py)
        self.image_token_id = self._token_id(family.image_token) if family.image_token else None
        self.video_token_id = self._token_id(family.video_token) if family.video_token else None
        self.audio_token_id = self._token_id(family.audio_token) if family.audio_token else None
        self.media_token_ids = {self.image_token_id, self.video_token_id, self.audio_token_id} - {None}

    def _token_id(self, token: str) -> int:
        tid = self.tokenizer.convert_tokens_to_ids(token)
        if not isinstance(tid, int) or tid == self.tokenizer.unk_token_id:
            raise UserError(f"the tokenizer has no {token} token, which {self.family.name} models need")
        return tid

    @property
    def pixels(self) -> dict[str, int]:
        """The image resize bounds in use (what args.json records); {} for a fixed-size family."""
        if not self.family.resizable or self.image_processor is None:
            return {}
        size = self.image_processor.size
        get = size.get if isinstance(size, dict) else lambda k: getattr(size, k, None)
        return {"min_pixels": get("shortest_edge"), "max_pixels": get("longest_edge")}

    def run_args(self) -> dict[str, Any]:
        """Everything that decides how media become tokens: saved in args.json, restored by infer/deploy/export."""
        return {**self.pixels, **(self.sampling.as_args() if self.family.video_token else {})}

    def _processed(
        self, images: list[str], videos: list[str], audios: list[str] = ()
    ) -> tuple[dict[str, Any], dict[str, list[str]]]:
        from lmforge.multimodal.media import load_image
        from lmforge.multimodal.video import load_video
        from lmforge.thirdparty import processor_media

        out: dict[str, Any] = {}
        reps: dict[str, list[str]] = {"image": [], "video": [], "audio": []}
        for kind, items in (("image", images), ("video", videos), ("audio", audios)):
            if items and kind not in self.family.kinds:
                column = MEDIA_COLUMNS[kind]
                raise EncodeError(f"{column}: {self.family.name} models take no {kind} (drop the {column})")
        if audios:
            out.update(self._audio_inputs(audios, reps))
        if images:
            loaded = [load_image(s, f"images[{k}]") for k, s in enumerate(images)]
            processed, reps["image"] = processor_media(self.processor, "image", loaded)
            out.update(processed)
        if videos:
            t = self.processor.video_processor.temporal_patch_size
            sample = self.family.frame_sampler()
            clips = [load_video(s, f"videos[{k}]", self.sampling, t, sample) for k, s in enumerate(videos)]
            processed, reps["video"] = processor_media(
                self.processor, "video", [c[0] for c in clips], video_metadata=[c[1] for c in clips]
            )
            processed.pop("video_metadata", None)
            if "second_per_grid_ts" in processed:  # Qwen2.5-VL: seconds per temporal patch, one per video
                import torch

                processed["second_per_grid_ts"] = torch.tensor(processed["second_per_grid_ts"], dtype=torch.float32)
            out.update(processed)
        return out, reps

    def _audio_inputs(self, audios: list[str], reps: dict[str, list[str]]) -> dict[str, Any]:
        """input_features / feature_attention_mask of the audios (the stock processor's own audio step), and
        each `<|AUDIO|>` expansion into reps["audio"]."""
        from lmforge.multimodal.audio import load_audio
        from lmforge.thirdparty import processor_media

        rate = self.feature_extractor.sampling_rate
        waves = [load_audio(s, f"audios[{k}]", rate) for k, s in enumerate(audios)]
        processed, reps["audio"] = processor_media(self.processor, "audio", waves, sampling_rate=rate)
        return processed

    def process_media(self, images: list[str], videos: list[str] = (), audios: list[str] = ()) -> dict[str, Any]:
        """The model inputs of a batch's media (pixel_values, image_grid_thw, pixel_values_videos,
        input_features, ...): the patches of every image/video and the features of every audio concatenated, as
        the processor batches them."""
        return self._processed(list(images), list(videos), list(audios))[0]

    def process_images(self, sources: list[str]) -> dict[str, Any]:
        return self.process_media(sources)

    def resized(self, processed: dict[str, Any]) -> list[tuple[int, int]]:
        """(width, height) of each image as the model sees it: its patch grid, or the pixel tensor's size."""
        if "image_grid_thw" in processed:
            p = self.image_processor.patch_size
            return [(int(g[2]) * p, int(g[1]) * p) for g in processed["image_grid_thw"]]
        return [(int(x.shape[-1]), int(x.shape[-2])) for x in processed.get("pixel_values", [])]

    def expand(
        self,
        messages: list[dict],
        images: list[str],
        videos: list[str] = (),
        objects: Any = None,
        strict: bool = True,
        audios: list[str] = (),
    ) -> tuple[list[dict], dict[str, Any]]:
        """Messages with the k-th `<image>` / `<video>` / `<audio>` replaced by its expanded placeholder and the
        grounding tags filled (multimodal/grounding.py); the processed media."""
        from lmforge.multimodal.grounding import fill
        from lmforge.multimodal.media import load_image

        given = {"image": list(images), "video": list(videos), "audio": list(audios)}
        for kind, items in given.items():
            tag = TAG[kind]
            count = sum(str(m.get("content") or "").count(tag) for m in messages)
            if count != len(items):
                plural = "s" if len(items) != 1 else ""
                raise EncodeError(f"messages: {count} {tag} tags but {len(items)} {kind}{plural}")
        any_media = any(given.values())
        processed, reps = self._processed(*given.values()) if any_media else ({}, {})
        sizes = [load_image(s).size for s in given["image"]] if objects else []
        messages = fill(messages, objects, self.family, sizes, self.resized(processed) if sizes else [], strict)
        if not any_media:
            return messages, {}
        pending = {kind: iter(enumerate(r)) for kind, r in reps.items()}
        tags = re.compile("|".join(re.escape(TAG[kind]) for kind in given))

        def sub(m: re.Match) -> str:
            kind = m.group(0)[1:-1]
            index, replacement = next(pending[kind])
            return self.family.placeholder(replacement, kind, index)

        out = []
        for m in messages:
            content = m.get("content")
            if isinstance(content, str) and tags.search(content):
                m = {**m, "content": tags.sub(sub, content)}
            out.append(m)
        return out, processed

    def encode(self, messages: list[dict], tools: list | None = None, media: dict | None = None) -> Encoded:
        media = media or {}
        images, videos = list(media.get("images") or []), list(media.get("videos") or [])
        audios = list(media.get("audios") or [])
        expanded, processed = self.expand(messages, images, videos, media.get("objects"), audios=audios)
        enc = super().encode(expanded, tools)
        media_ids = self.media_token_ids
        labels = [IGNORE if t in media_ids else lab for t, lab in zip(enc.input_ids, enc.labels)]
        if processed and enc.truncated:
            tokens = [t for t in (self.family.image_token, self.family.video_token, self.family.audio_token) if t]
            want = sum(str(m.get("content") or "").count(t) for m in expanded for t in tokens)
            if sum(t in media_ids for t in enc.input_ids) != want:
                raise EncodeError(
                    f"--max_length {self.max_length} would cut through a media item (--truncation_strategy)"
                )
        if all(lab == IGNORE for lab in labels):
            raise EncodeError("no trained tokens (no assistant answer left after truncation)")
        return Encoded(enc.input_ids, labels, enc.truncated)

    def token_types(self, ids: list[int]) -> list[int] | None:
        """mm_token_type_ids: 1 for image tokens, 2 for video tokens, 3 for audio tokens, 0 for text (Qwen2-VL
        needs them); None for a family whose model takes none."""
        if not self.family.token_types:
            return None
        types = {self.image_token_id: 1, self.video_token_id: 2, self.audio_token_id: 3}
        types.pop(None, None)
        return [types.get(t, 0) for t in ids]


def media_of(row: dict) -> dict[str, Any]:
    """The media columns a standard row carries (only those not empty), and its grounding objects."""
    media: dict[str, Any] = {col: list(row[col]) for col in MEDIA_COLUMNS.values() if row.get(col)}
    return {**media, "objects": row["objects"]} if row.get("objects") else media  # grounding (grounding.py)


def build_media_template(
    tokenizer: Any, spec: Any, model_dir: Path, config: dict, template_args: Any, **kw: Any
) -> Any:
    """A MediaTemplate for a vision-language model's folder; None for a text-only model."""
    import json

    from lmforge.multimodal.families import vl_family_for
    from lmforge.multimodal.video import sampling_of
    from lmforge.thirdparty import audio_feature_extractor, stock_vl_processor, vl_image_processor

    family = vl_family_for(config)
    if family is None:
        return None
    bounds = pixel_bounds(template_args) if family.resizable else {}
    if family.image_processor:
        image_processor = vl_image_processor(family, model_dir, bounds)
    else:  # an audio family: its feature extractor takes the image processor's place in the processor
        image_processor = audio_feature_extractor(family, model_dir)
    video = None
    if family.video_token:
        video = _video_processor(family, image_processor, model_dir, bounds)
    try:  # the folder's processor settings (LLaVA: patch_size, vision_feature_select_strategy, ...)
        saved = json.loads((Path(model_dir) / "processor_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        saved = {}
    skip = ("processor_class", "chat_template", "image_processor", "feature_extractor")
    extra = {k: v for k, v in saved.items() if k not in skip}
    processor = stock_vl_processor(family, image_processor, tokenizer, None, video, **extra)
    return MediaTemplate(tokenizer, spec, family=family, processor=processor, sampling=sampling_of(template_args), **kw)


def _video_processor(family: Any, image_processor: Any, model_dir: Path, bounds: dict[str, int]) -> Any:
    """The frames' resize bounds: the folder's video_preprocessor_config.json size, else the family's; per frame
    (Qwen2-VL, Qwen2.5-VL: --min_pixels/--max_pixels replace them) or per clip (Qwen3-VL: the budget is the whole
    clip's, and --min_pixels/--max_pixels then bound each frame)."""
    import json

    from lmforge.multimodal.video import FrameVideoProcessor

    try:
        saved = json.loads((Path(model_dir) / "video_preprocessor_config.json").read_text(encoding="utf-8"))["size"]
        default = {"shortest_edge": int(saved["shortest_edge"]), "longest_edge": int(saved["longest_edge"])}
    except (OSError, ValueError, KeyError, TypeError):
        default = {"shortest_edge": family.video_size[0], "longest_edge": family.video_size[1]}
    if family.video_budget == "clip":
        return FrameVideoProcessor(image_processor, dict(bounds), clip_size=default)
    size = {**default, **bounds}
    size["shortest_edge"] = min(size["shortest_edge"], size["longest_edge"])
    return FrameVideoProcessor(image_processor, size)


def media_run_args(template: Any) -> dict[str, Any]:
    """What args.json records for a media template (the resize bounds used); {} for a text template."""
    return template.run_args() if getattr(template, "takes_media", False) else {}


def text_only_message(template: Any) -> str:
    model = Path(str(getattr(template.tokenizer, "name_or_path", "") or "the model")).name
    return f"--model {model} is text-only: drop the images or pick a vision-language model"


def save_media_files(template: Any, out: Path) -> None:
    """A merged or exported vision-language model: the image processor with the resize bounds in use and
    processor_config.json naming the stock processor class (nothing for a text template)."""
    if getattr(template, "takes_media", False):
        from lmforge.thirdparty import save_vl_processor

        save_vl_processor(template.family, template.image_processor or template.feature_extractor, Path(out))


def media_report(template: Any, encoded: Any) -> str | None:
    """`lmforge check`: how many images/videos/audios the usable rows carry and the tokens they cost (images after
    resizing, audios with their total and longest duration)."""
    if not getattr(template, "takes_media", False):
        return None
    import json

    rows = [json.loads(m) for m, e in zip(encoded["media"], encoded["error"]) if m and not e]

    def tokens(token_id: int | None) -> int:
        return sum(sum(t == token_id for t in ids) for ids in encoded["input_ids"])

    count = {col: sum(len(r.get(col, [])) for r in rows) for col in ("images", "videos", "audios")}
    parts = []  # (count, the rest): "3 images" + " in 3 rows" (the first part only) + ", 6 image tokens ..."
    if count["images"] or not (count["videos"] or count["audios"]):
        px = template.pixels
        sized = f" (resized to {px['min_pixels']}..{px['max_pixels']} pixels)" if px else ""
        parts.append((f"{count['images']} images", f", {tokens(template.image_token_id)} image tokens{sized}"))
    if count["videos"]:
        s = template.sampling
        rest = f", {tokens(template.video_token_id)} video tokens (--fps {s.fps:g}, --max_frames {s.max_frames})"
        parts.append((f"{count['videos']} videos", rest))
    if count["audios"]:
        rest = f"{_durations(template, rows)}, {tokens(template.audio_token_id)} audio tokens"
        parts.append((f"{count['audios']} audios", rest))
    shown = [n + (f" in {len(rows)} rows" if k == 0 else "") + rest for k, (n, rest) in enumerate(parts)]
    return "  media: " + "; ".join(shown)


def _durations(template: Any, rows: list[dict]) -> str:
    """' (12.5 s in all, longest 3.0 s)' of the rows' audios; a note when one is past the extractor's window."""
    from lmforge.multimodal.audio import duration, load_audio

    rate = template.feature_extractor.sampling_rate
    secs = [duration(load_audio(s, "audios", rate), rate) for r in rows for s in r.get("audios", [])]
    window = getattr(template.feature_extractor, "chunk_length", None)
    cut = sum(s > window for s in secs) if window else 0
    note = f", {cut} longer than {window} s are cut to it" if cut else ""
    return f" ({sum(secs):.1f} s in all, longest {max(secs):.1f} s{note})"
