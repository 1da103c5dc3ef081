"""Applying a peer's log entries and blob bytes here: idempotent (an event is stored once, by its
id) and atomic with the cursor that says how far the peer's log has been applied."""

from __future__ import annotations

import base64
import binascii
import itertools
from typing import Any

from .. import iteration, store
from ..blobs import blob_store
from ..exceptions import InvalidFrame
from ..merge import Outcome
from ..models import Change, Event, ReplicaCursor
from ..paths import TopicPath, covers_canonical
from ..store import WriteRequest

_ENTRY_FIELDS: dict[str, type | tuple[type, ...]] = {
    "kind": str,
    "id": str,
    "path": str,
    "from": str,
    "date": int,
    "content_type": str,
    "deleted": bool,
    "is_blob": bool,
    "aborted": bool,
}


def cursor(key: str) -> int:
    row = ReplicaCursor.objects.filter(key=key).first()
    return row.cursor if row else 0


def check_entry(entry: Any, allowed: list[str]) -> tuple[dict[str, Any], TopicPath]:
    """Validate one entry from the network; its path must be under ``allowed``."""
    if not isinstance(entry, dict):
        raise InvalidFrame("A log entry is a JSON object.")
    for name, kind in _ENTRY_FIELDS.items():
        if not isinstance(entry.get(name), kind) or (kind is int and isinstance(entry.get(name), bool)):
            raise InvalidFrame(f"Log entry field {name!r} is missing or of the wrong type.")
    if entry["kind"] not in (Change.WRITE, Change.COMPLETE, Change.ABORT):
        raise InvalidFrame(f"Unknown log entry kind {entry['kind'][:20]!r}.")
    path = TopicPath.from_canonical(entry["path"]).require_topic()
    if not any(covers_canonical(prefix, path.canonical) for prefix in allowed):
        raise InvalidFrame(
            f"Entry for '{path.canonical}' is outside this link's prefixes.", code="forbidden_path"
        )
    return entry, path


def _value(entry: dict[str, Any]) -> bytes | None:
    encoded = entry.get("value_b64")
    if encoded is None:
        return None
    if not isinstance(encoded, str):
        raise InvalidFrame("value_b64 must be a string.")
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidFrame("value_b64 is not valid base64.") from exc


def _write(entry: dict[str, Any], path: TopicPath, source: str) -> WriteRequest:
    return WriteRequest(
        path=path,
        origin=entry["from"],
        date=entry["date"],
        content_type=entry["content_type"],
        deleted=entry["deleted"],
        source=source,
    )


def _inline_write(entry: dict[str, Any]) -> bool:
    """A write of an inline value or a tombstone: stored set-based with its neighbours."""
    return entry["kind"] == Change.WRITE and not entry["is_blob"]


def store_entry(entry: dict[str, Any], path: TopicPath, source: str) -> Event | None:
    """Store one entry; return the event when it is a new upload whose bytes must follow."""
    if entry["kind"] == Change.ABORT:
        event = Event.objects.filter(event_id=entry["id"], aborted=False, complete=False).first()
        if event is not None:
            store.abort_upload(event, f"aborted on {source}")
        return None
    if entry["kind"] == Change.COMPLETE or (entry["is_blob"] and entry["aborted"]):
        return None  # the bytes and their end travel on their own; an aborted upload has none
    write = _write(entry, path, source)
    if entry["is_blob"]:
        recorded = store.record(write, value=None, is_blob=True)
        return recorded.event if recorded.outcome is not Outcome.EXISTING else None
    store.record(write, value=_value(entry))
    return None


def apply_entries(key: str, source: str, allowed: list[str], entries: list[Any], upto: int) -> list[Event]:
    """Store a peer's entries and set the cursor ``key`` to ``upto``, in one transaction (a crash
    re-applies the batch, which changes nothing twice). Returns the new uploads whose bytes the
    peer streams next."""
    checked = [check_entry(entry, allowed) for entry in entries]  # all or nothing
    uploads: list[Event] = []
    with iteration.write_transaction():
        for inline, run in itertools.groupby(checked, key=lambda checked: _inline_write(checked[0])):
            if inline:  # consecutive inline writes: set-based, in order, one doorbell per prefix
                store.record_together([(_write(e, path, source), _value(e)) for e, path in run])
                continue
            for entry, path in run:
                upload = store_entry(entry, path, source)
                if upload is not None:
                    uploads.append(upload)
        ReplicaCursor.objects.update_or_create(key=key, defaults={"cursor": upto})
    return uploads


def _replicated_upload(event_id: str, source: str) -> Event | None:
    return (
        Event.objects.filter(event_id=event_id, source=source, is_blob=True, aborted=False, complete=False)
        .select_related("topic")
        .first()
    )


def append_bytes(event_id: str, source: str, offset: int, data: bytes) -> None:
    """Store bytes ``[offset, offset + len(data))`` of a replicated upload; bytes already stored
    (a resumed stream repeats some) are skipped. A gap is a protocol error."""
    event = _replicated_upload(event_id, source)
    if event is None or not data:
        return
    stored = blob_store().stored_size(event)
    if offset > stored:
        raise InvalidFrame(f"Blob bytes at {offset} leave a gap after {stored}.", code="blob_gap")
    fresh = data[stored - offset :]
    if fresh:
        store.append_chunk(event, stored, fresh)


def finish_bytes(event_id: str, source: str, size: int, sha256: str) -> None:
    """The peer's upload is complete: check the stored bytes against its digest and complete ours
    (a mismatch aborts it, like a local upload that went wrong)."""
    event = _replicated_upload(event_id, source)
    if event is not None:
        store.finish_upload(event, size=size, received_sha256=sha256)


def abort_bytes(event_id: str, source: str, reason: str) -> None:
    event = _replicated_upload(event_id, source)
    if event is not None:
        store.abort_upload(event, reason)
