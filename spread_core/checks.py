"""System checks for the SPREAD settings."""

from __future__ import annotations

from typing import Any

from django.core.checks import Error, register

from .conf import DEFAULTS, spread_settings


@register()
def check_spread_settings(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    errors: list[Error] = []
    try:
        name = spread_settings.NODE_NAME
    except AttributeError as exc:
        return [Error(str(exc), hint=f"Known keys: {', '.join(sorted(DEFAULTS))}.", id="spread_core.E001")]
    if not isinstance(name, str) or not name or len(name.encode()) > 255:
        errors.append(
            Error(
                "SPREAD['NODE_NAME'] must be a non-empty string of at most 255 bytes.",
                hint="Set SPREAD_NODE_NAME in the environment or SPREAD['NODE_NAME'] in settings.",
                id="spread_core.E002",
            )
        )
    for key in ("INLINE_MAX", "CHUNK_SIZE", "MAX_UPLOAD"):
        value = getattr(spread_settings, key)
        if not isinstance(value, int) or value <= 0:
            errors.append(Error(f"SPREAD['{key}'] must be a positive integer.", id="spread_core.E003"))
    if not errors and spread_settings.INLINE_MAX > spread_settings.CHUNK_SIZE:
        errors.append(
            Error(
                "SPREAD['INLINE_MAX'] is larger than SPREAD['CHUNK_SIZE'].",
                hint="Inline values must fit in one chunk; lower INLINE_MAX or raise CHUNK_SIZE.",
                id="spread_core.E004",
            )
        )
    if spread_settings.LAYER_DOORBELLS not in ("process", "subscriber"):
        errors.append(
            Error("SPREAD['LAYER_DOORBELLS'] must be 'process' or 'subscriber'.", id="spread_core.E007")
        )
    return errors + _blob_store_errors()


def _blob_store_errors() -> list[Any]:
    """BLOB_STORE names a store that loads, and the store's own checks."""
    from .blobs import blob_store

    config = spread_settings.BLOB_STORE
    if not isinstance(config, dict) or not isinstance(config.get("BACKEND"), str):
        return [
            Error(
                "SPREAD['BLOB_STORE'] must be a dict with a 'BACKEND' dotted path.",
                hint='For instance {"BACKEND": "spread_core.blobs.files.FileBlobStore", "OPTIONS": {}}.',
                id="spread_core.E005",
            )
        ]
    try:
        store = blob_store()
    except (ImportError, TypeError) as exc:
        return [Error(f"SPREAD['BLOB_STORE'] cannot be loaded: {exc}", id="spread_core.E005")]
    return store.check()
