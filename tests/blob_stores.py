"""The blob stores in-process tests run their blob cases through, and what a store holds."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from django.conf import settings

from spread_core.blobs import blob_store
from spread_core.models import BlobChunk

BLOB_STORES: dict[str, dict[str, Any]] = {
    "files": {
        "BACKEND": "spread_core.blobs.files.FileBlobStore",
        "OPTIONS": {"ROOT": settings.TEST_BLOB_ROOT},
    },
    "database": {"BACKEND": "spread_core.blobs.database.DatabaseBlobStore", "OPTIONS": {}},
}
#: Values over 16 bytes are blobs, stored in pieces of 64.
SMALL = {"INLINE_MAX": 16, "CHUNK_SIZE": 64}


def spread_with(store: str = "files", **options: Any) -> dict[str, Any]:
    """The test run's SPREAD settings with ``options`` and the blob store named ``store``."""
    return {**settings.SPREAD, **options, "BLOB_STORE": BLOB_STORES[store]}


def stored_pieces(event_pk: int) -> list[bytes]:
    """The bytes the configured store holds for a blob: its chunk rows (database store), or its
    file's bytes as one piece (file store); [] when it holds none."""
    store = blob_store()
    if store.in_database:
        rows = BlobChunk.objects.filter(event_id=event_pk).order_by("index").values_list("data", flat=True)
        return [bytes(data) for data in rows]
    path: Path = store.path(event_pk)  # type: ignore[attr-defined]
    return [path.read_bytes()] if path.exists() else []


def stored_blob_count() -> int:
    """Chunk rows (database store) or files (file store) held for all events."""
    store = blob_store()
    if store.in_database:
        return BlobChunk.objects.count()
    root = Path(settings.TEST_BLOB_ROOT)
    return sum(1 for path in root.glob("*/*") if path.is_file())


def empty_test_blob_root() -> None:
    """Remove every blob file of earlier tests (their databases are gone, their keys reused)."""
    shutil.rmtree(settings.TEST_BLOB_ROOT, ignore_errors=True)
    Path(settings.TEST_BLOB_ROOT).mkdir(parents=True, exist_ok=True)
    blob_store.cache_clear()  # type: ignore[attr-defined]
