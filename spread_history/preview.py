"""How the history admin shows a value: text, pretty JSON, an image, or hex for other bytes."""

from __future__ import annotations

import json
from dataclasses import dataclass

from spread_core.models import Event
from spread_core.reader import ValueReader

PREVIEW_BYTES = 64 * 1024
HEX_BYTES = 256


@dataclass(frozen=True)
class Preview:
    kind: str  # "text", "json", "image", "hex", "none"
    text: str = ""
    truncated: bool = False


def _head(event: Event, limit: int) -> bytes:
    if not event.is_blob:
        return bytes(event.value or b"")[:limit]
    data = b""
    if event.complete:
        for chunk in ValueReader(event):
            data += chunk
            if len(data) >= limit:
                break
    return data[:limit]


def preview(event: Event) -> Preview:
    if event.deleted or event.aborted:
        return Preview("none")
    media = event.content_type.split(";")[0].strip().lower()
    if media.startswith("image/"):
        return Preview("image")
    head = _head(event, PREVIEW_BYTES)
    truncated = event.size > len(head)
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        hex_head = head[:HEX_BYTES]
        lines = [f"{i:08x}  {hex_head[i : i + 16].hex(' ')}" for i in range(0, len(hex_head), 16)]
        return Preview("hex", "\n".join(lines), event.size > len(hex_head))
    if media.endswith("json") and not truncated:
        try:
            return Preview("json", json.dumps(json.loads(text), indent=2, ensure_ascii=False))
        except ValueError:
            pass
    return Preview("text", text, truncated)


def text_of(event: Event) -> str | None:
    """The whole value as text, for diffs (None when it is not UTF-8 text or too large)."""
    if event.deleted or event.aborted or event.size > PREVIEW_BYTES:
        return None
    try:
        text = _head(event, PREVIEW_BYTES).decode("utf-8")
    except UnicodeDecodeError:
        return None
    if event.content_type.split(";")[0].strip().lower().endswith("json"):
        try:
            return json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False)
        except ValueError:
            return text
    return text
