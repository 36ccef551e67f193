"""Video for the Qwen VL families without torchvision: decode, sample frames, patchify as the video processor does.

transformers' Qwen2-VL / Qwen3-VL video processors import torchvision at module import, and torchvision cannot pair
with torch 2.13 CPU (see lmforge.thirdparty). So frames are decoded here (animated GIF / WebP / PNG with PIL; any other
container with PyAV when it is installed, the `video` extra), sampled at `--fps` up to `--max_frames` (the Qwen2-VL
video processor's rule), run through the family's PIL image processor one by one, and stacked on the temporal axis:
each image patch row is (C, T, p, p) with the frame copied T times; keeping copy 0 of T consecutive frames gives the
video processor's (C, T, p, p) rows, in the same spatial order (checked against torchvision: mm-quant-tasks A.4).

`FrameVideoProcessor` stands in for the family's video processor inside the stock processor (lmforge.thirdparty), so the
placeholder text (frame timestamps for Qwen3-VL, second_per_grid_ts for Qwen2.5-VL) is the processor's own.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from lmforge.errors import RowError, UserError

FPS, MAX_FRAMES, MIN_FRAMES = 2.0, 768, 4  # the Qwen video processors' defaults (ms-swift's FPS / FPS_MAX_FRAMES)


@dataclass(frozen=True)
class Sampling:
    fps: float = FPS
    max_frames: int = MAX_FRAMES

    def as_args(self) -> dict[str, Any]:
        return {"fps": self.fps, "max_frames": self.max_frames}


def flag_or_env(template_args: Any, flag: str, env: str, cast: type, example: str) -> Any:
    """--flag, else ms-swift's environment variable of the same setting, else None."""
    value = getattr(template_args, flag, None)
    if value is None and os.environ.get(env):
        try:
            value = cast(os.environ[env])
        except ValueError:
            raise UserError(f"{env}={os.environ[env]!r}: not a {cast.__name__}", hint=f"e.g. {env}={example}")
    return value


def sampling_of(template_args: Any) -> Sampling:
    """--fps / --max_frames, else ms-swift's FPS / FPS_MAX_FRAMES environment variables, else the defaults."""
    values = {
        "fps": flag_or_env(template_args, "fps", "FPS", float, "2"),
        "max_frames": flag_or_env(template_args, "max_frames", "FPS_MAX_FRAMES", int, "64"),
    }
    return Sampling(**{k: v for k, v in values.items() if v is not None})


def _decode(src: str, field: str) -> tuple[list[Any], float | None]:
    """All frames (PIL, RGB) and the source frame rate."""
    import io

    from PIL import Image, ImageSequence, UnidentifiedImageError

    from lmforge.multimodal.sources import media_bytes

    data = media_bytes(src, field)
    try:
        img = Image.open(io.BytesIO(data))
        if getattr(img, "n_frames", 1) > 1:
            frames, ms = [], []
            for frame in ImageSequence.Iterator(img):
                ms.append(frame.info.get("duration") or 0)
                frames.append(frame.convert("RGB"))
            per_frame = sum(ms) / len(ms) if any(ms) else 0
            return frames, (1000.0 / per_frame if per_frame else None)
        raise RowError(field, "a still image, not a video", "put it in 'images' with an <image> tag")
    except (UnidentifiedImageError, OSError, SyntaxError):
        pass  # not an image container: a real video file
    return _decode_av(data, src, field)


def _decode_av(data: bytes, src: str, field: str) -> tuple[list[Any], float | None]:
    import io

    shown = src if not src.startswith("data:") and len(src) < 200 else "the data"
    try:
        import av
    except ImportError:
        raise RowError(
            field,
            f"{shown}: no video decoder for this file",
            "pip install 'lmforge[video]' (PyAV), or give the frames as an animated GIF/WebP",
        )
    try:
        with av.open(io.BytesIO(data)) as container:
            stream = container.streams.video[0]
            frames = [f.to_image().convert("RGB") for f in container.decode(stream)]
            rate = float(stream.average_rate) if stream.average_rate else None
    except (av.error.FFmpegError, IndexError, ValueError) as e:
        raise RowError(field, f"{shown}: not a readable video ({str(e)[:80]})")
    if not frames:
        raise RowError(field, f"{shown}: a video without frames")
    return frames, rate


def frame_indices(total: int, src_fps: float | None, sampling: Sampling, temporal: int) -> list[int]:
    """transformers' Qwen2VLVideoProcessor.sample_frames with fps: total/src_fps*fps frames, at least MIN_FRAMES,
    at most --max_frames, a multiple of the temporal patch (a short clip keeps all its frames)."""
    most = math.floor(min(sampling.max_frames, total) / temporal) * temporal
    wanted = total / (src_fps or 24.0) * sampling.fps  # no frame rate in the file: 24, as transformers assumes
    n = math.floor(min(max(wanted, MIN_FRAMES), most, total) / temporal) * temporal
    if n <= 0:
        return list(range(total))
    return [int(k * total / n) for k in range(n)]


def qwen3_frame_indices(total: int, src_fps: float | None, sampling: Sampling, temporal: int) -> list[int]:
    """transformers' Qwen3VLVideoProcessor.sample_frames with fps (checked with 5.24): int(total/src_fps*fps)
    frames within [MIN_FRAMES, --max_frames] and the clip, spread by linspace and rounded; not rounded to the
    temporal patch (patchify repeats the last frame instead)."""
    import numpy as np

    wanted = int(total / (src_fps or 24.0) * sampling.fps)
    n = min(max(wanted, MIN_FRAMES), sampling.max_frames, total)
    return np.linspace(0, total - 1, n).round().astype(int).tolist()


def clip_frame_size(frames: int, height: int, width: int, factor: int, temporal: int, size: dict) -> tuple[int, int]:
    """Qwen3-VL's video resize (transformers 5.24's qwen3_vl smart_resize, uncapped): `size` bounds the pixels of
    the whole clip (frames rounded to the temporal patch x height x width), so a longer clip gets smaller frames."""
    if height < factor or width < factor:
        scale = max(factor / height, factor / width)
        height, width = int(height * scale), int(width * scale)
    h, w = round(height / factor) * factor, round(width / factor) * factor
    t = max(round(frames / temporal) * temporal, temporal)
    lo, hi = size["shortest_edge"], size["longest_edge"]
    if t * h * w > hi:
        beta = math.sqrt(frames * height * width / hi)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif t * h * w < lo:
        beta = math.sqrt(lo / (frames * height * width))
        h, w = math.ceil(height * beta / factor) * factor, math.ceil(width * beta / factor) * factor
    return h, w


def load_video(
    src: str, field: str, sampling: Sampling, temporal: int = 2, sample: Any = frame_indices
) -> tuple[list[Any], Any]:
    """Sampled frames (`sample`: the family's rule) and their transformers VideoMetadata (frame rate, indices:
    Qwen3-VL's timestamps)."""
    from transformers.video_utils import VideoMetadata

    frames, src_fps = _decode(src, field)
    idx = sample(len(frames), src_fps, sampling, temporal)
    w, h = frames[0].size
    meta = VideoMetadata(
        total_num_frames=len(frames),
        fps=src_fps,
        width=w,
        height=h,
        duration=len(frames) / src_fps if src_fps else None,
        video_backend="pil",
        frames_indices=idx,
    )
    return [frames[k] for k in idx], meta


def probe_video(src: str, field: str) -> None:
    """A row's video is decodable (read time: a bad file is this row's one line, not a crash mid-training)."""
    _decode(src, field)


class FrameVideoProcessor:
    """The family's video processor, rebuilt on its PIL image processor (see the module docstring)."""

    def __init__(self, image_processor: Any, size: dict[str, int], clip_size: dict[str, int] | None = None):
        self.image_processor = image_processor
        self.size = size  # per-frame resize bounds
        self.clip_size = clip_size  # Qwen3-VL: bounds on the pixels of the whole clip, applied first
        self.merge_size = image_processor.merge_size
        self.patch_size = image_processor.patch_size
        self.temporal_patch_size = image_processor.temporal_patch_size

    def __call__(self, videos: list[list[Any]], video_metadata: list[Any] | None = None, **_: Any) -> dict[str, Any]:
        import torch

        pixels, grids = [], []
        for frames in videos:
            p, grid = self.patchify(frames)
            pixels.append(p)
            grids.append(grid)
        return {
            "pixel_values_videos": torch.cat(pixels),
            "video_grid_thw": torch.tensor(grids),
            "video_metadata": list(video_metadata or []),
        }

    def patchify(self, frames: list[Any]) -> tuple[Any, list[int]]:
        size = self.size
        if self.clip_size is not None:
            frames, size = self._clip_resized(frames)
        out = self.image_processor(images=frames, size=size, return_tensors="pt")
        t, ps = self.temporal_patch_size, self.patch_size
        _, gh, gw = (int(x) for x in out["image_grid_thw"][0])
        n = gh * gw
        x = out["pixel_values"].reshape(len(frames), n, -1, t, ps, ps)[:, :, :, 0]  # (F, N, C, p, p)
        if pad := -len(frames) % t:  # as the video processor: repeat the last frame
            x = _repeat_last(x, pad)
        f = x.shape[0]
        x = x.reshape(f // t, t, n, -1, ps, ps).permute(0, 2, 3, 1, 4, 5)  # (F/T, N, C, T, p, p)
        return x.reshape((f // t) * n, -1), [f // t, gh, gw]

    def _clip_resized(self, frames: list[Any]) -> tuple[list[Any], dict[str, int]]:
        """Frames resized to their share of the clip budget, and the per-frame bounds to apply after it: the
        --min_pixels/--max_pixels given (`size`), else exactly the clip size (the image processor keeps it)."""
        from PIL import Image

        w, h = frames[0].size
        factor = self.patch_size * self.merge_size
        h, w = clip_frame_size(len(frames), h, w, factor, self.temporal_patch_size, self.clip_size or {})
        frames = [f.resize((w, h), Image.Resampling.BICUBIC) for f in frames]
        lo, hi = self.size.get("shortest_edge", h * w), self.size.get("longest_edge", h * w)
        return frames, {"shortest_edge": min(lo, hi), "longest_edge": hi}


def _repeat_last(x: Any, pad: int) -> Any:
    import torch

    return torch.cat([x, x[-1:].expand(pad, *x.shape[1:])])
