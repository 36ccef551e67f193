"""Grounding rows, as ms-swift writes them: `<ref-object>` and `<bbox>` tags in the messages and an `objects` column
{"ref": [...], "bbox": [[x1, y1, x2, y2] | [x, y], ...], "bbox_type": "real" | "norm1", "image_id": [...]}, or
ms-swift 2.x's list of {"caption", "bbox", "bbox_type", "image"} (one per object).

The k-th `<ref-object>` becomes the k-th ref, the k-th `<bbox>` the k-th box, in the family's own text and
coordinate convention (families.py: Qwen's `<|object_ref_start|>cat<|object_ref_end|>` and
`<|box_start|>(x1,y1),(x2,y2)<|box_end|>`; Qwen2-VL / Qwen3-VL on a 0-1000 scale, Qwen2.5-VL in pixels of the
*resized* image, ms-swift's fix for its issue 3407). `bbox_type real` (the default) is pixels of the original image,
`norm1` fractions of it. Every malformed case is one line naming the field.
"""

from __future__ import annotations

import json
from typing import Any

from lmforge.templates.encode import EncodeError

REF, BOX = "<ref-object>", "<bbox>"


def parse_objects(objects: Any) -> dict[str, Any]:
    """The `objects` column as a dict (a JSON string is accepted, as datasets often store it)."""
    if isinstance(objects, str):
        try:
            objects = json.loads(objects)
        except ValueError:
            raise EncodeError("objects: not valid JSON")
    if isinstance(objects, list):
        return _from_list(objects)
    if not isinstance(objects, dict):
        raise EncodeError(f"objects: expected {{'ref': [...], 'bbox': [...]}}, got {type(objects).__name__}")
    return objects


def _from_list(objects: list) -> dict[str, Any]:
    """ms-swift 2.x's list form, one dict per object: {"caption" (or "ref"), "bbox", "bbox_type", "image"}."""
    out: dict[str, Any] = {"ref": [], "bbox": [], "image_id": []}
    kinds = set()
    for k, o in enumerate(objects):
        if not isinstance(o, dict) or "bbox" not in o:
            raise EncodeError(f"objects[{k}]: expected {{'caption': ..., 'bbox': [...]}}, got {o!r}"[:160])
        ref = o.get("caption", o.get("ref"))
        if ref is not None:
            out["ref"].append(ref)
        out["bbox"].append(o["bbox"])
        out["image_id"].append(o.get("image", o.get("image_id", 0)))
        kinds.add(o.get("bbox_type", "real"))
    if len(kinds) > 1:
        raise EncodeError(f"objects: mixed bbox_type {sorted(kinds)}; give every box in one convention")
    return {**out, "bbox_type": kinds.pop() if kinds else "real"}


def _check_count(messages: list[dict], tag: str, items: list, what: str, strict: bool) -> None:
    count = sum(str(m.get("content") or "").count(tag) for m in messages)
    if count > len(items) or (strict and count != len(items)):
        raise EncodeError(f"messages: {count} {tag} tags but {len(items)} {what}{'s' if len(items) != 1 else ''}")


def _box(k: int, box: Any, size: tuple[int, int], resized: tuple[int, int], convention: str, real: bool) -> str:
    if not isinstance(box, list) or len(box) not in (2, 4) or not all(isinstance(v, (int, float)) for v in box):
        raise EncodeError(f"objects.bbox[{k}]: expected [x1, y1, x2, y2] or [x, y] numbers, got {box!r}")
    points = []
    for j in range(0, len(box), 2):
        fx, fy = (box[j] / size[0], box[j + 1] / size[1]) if real else (box[j], box[j + 1])
        if not (0 <= fx <= 1 and 0 <= fy <= 1):
            raise EncodeError(f"objects.bbox[{k}]: {box} lies outside the image ({size[0]}x{size[1]})")
        scale = (1000, 1000) if convention == "norm1000" else resized
        points.append(f"({round(fx * scale[0])},{round(fy * scale[1])})")
    return ",".join(points)


def fill(
    messages: list[dict],
    objects: Any,
    family: Any,
    sizes: list[tuple[int, int]],
    resized: list[tuple[int, int]],
    strict: bool = True,
) -> list[dict]:
    """Messages with the grounding tags replaced (unchanged when the row has neither tags nor objects).
    `sizes`: each image's original (width, height); `resized`: what the model sees (Qwen2.5-VL's coordinates).
    `strict`: every ref and box has its tag (training); a prompt (inference) may leave the answer's boxes out."""
    if not objects and not any(REF in str(m.get("content")) or BOX in str(m.get("content")) for m in messages):
        return messages
    obj = parse_objects(objects or {})
    refs, boxes = list(obj.get("ref") or []), list(obj.get("bbox") or [])
    _check_count(messages, REF, refs, "ref", strict)
    _check_count(messages, BOX, boxes, "bbox", strict)
    if boxes and not sizes:
        raise EncodeError("objects: boxes need the image they lie in (the row has no images)")
    image_ids = obj.get("image_id") or [0] * len(boxes)
    real = obj.get("bbox_type", "real") == "real"
    texts = {REF: iter(family.ref_text.format(ref=r) for r in refs), BOX: iter([])}
    rendered = []
    for k, box in enumerate(boxes):
        i = image_ids[k] if k < len(image_ids) else 0
        if not isinstance(i, int) or not 0 <= i < len(sizes):
            raise EncodeError(f"objects.image_id[{k}]: {i!r} is not an image of this row ({len(sizes)} images)")
        rendered.append(family.box_text.format(box=_box(k, box, sizes[i], resized[i], family.bbox, real)))
    texts[BOX] = iter(rendered)
    out = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, str) and (REF in content or BOX in content):
            for tag in (REF, BOX):
                pieces = content.split(tag)
                content = pieces[0] + "".join(next(texts[tag]) + p for p in pieces[1:])
            m = {**m, "content": content}
        out.append(m)
    return out
