"""Where the bytes of large values live: ``blob_store()`` is the store ``SPREAD["BLOB_STORE"]``
names (files by default, see ``files.py``; or the database's chunk table, ``database.py``), and
``upload_progress`` wakes the readers of an upload in this process when its bytes arrive."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.utils.module_loading import import_string

from ..conf import per_settings, spread_settings
from .progress import upload_progress

if TYPE_CHECKING:
    from .base import BlobStore

__all__ = ["blob_store", "upload_progress"]


@per_settings
def blob_store() -> BlobStore:
    """The configured store, made once (again after a setting changes)."""
    config = spread_settings.BLOB_STORE
    backend = import_string(config["BACKEND"])
    store: BlobStore = backend(**config.get("OPTIONS", {}))
    return store
