"""The SPREAD settings object and the system checks that report configuration mistakes."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.checks import run_checks
from django.db import connection
from django.test import override_settings

from spread_api.policy import TokenClaimsPolicy
from spread_core.checks import check_spread_settings
from spread_core.conf import DEFAULTS, GIB, KIB, SpreadSettings, spread_settings

from .blob_stores import BLOB_STORES

#: A file blob store with its directory (PostgreSQL has no default one).
WITH_BLOB_ROOT = {"BLOB_STORE": BLOB_STORES["files"]}


def spread_checks(**spread: Any) -> list[Any]:
    """The checks' messages for ``spread`` (with a file blob store that has its directory, unless
    ``BLOB_STORE`` is given: PostgreSQL needs one)."""
    with override_settings(SPREAD={**WITH_BLOB_ROOT, **spread}):
        return list(check_spread_settings())


def spread_check_ids(**spread: Any) -> list[str]:
    return [error.id for error in spread_checks(**spread)]


# --- the settings object ----------------------------------------------------------------------


@override_settings(SPREAD={})
def test_defaults_apply_when_spread_is_empty() -> None:
    assert spread_settings.NODE_NAME == "spread"
    assert spread_settings.INLINE_MAX == 4096
    assert spread_settings.CHUNK_SIZE == 256 * KIB
    assert spread_settings.MAX_UPLOAD == 10 * GIB
    assert spread_settings.UPLOAD_IDLE_TIMEOUT == 30.0
    assert spread_settings.READ_REQUIRES_TOKEN is False


def test_defaults_apply_when_spread_is_not_set_at_all() -> None:
    with override_settings():
        from django.conf import settings

        del settings.SPREAD
        spread_settings.reload()
        try:
            assert DEFAULTS["INLINE_MAX"] == spread_settings.INLINE_MAX
        finally:
            spread_settings.reload()


def test_dotted_path_settings_are_imported() -> None:
    assert spread_settings.ACCESS_POLICY is TokenClaimsPolicy
    with override_settings(SPREAD={"ACCESS_POLICY": "spread_core.conf.SpreadSettings"}):
        assert spread_settings.ACCESS_POLICY is SpreadSettings


def test_user_values_override_defaults() -> None:
    with override_settings(SPREAD={"NODE_NAME": "edge-1", "INLINE_MAX": 8192}):
        assert spread_settings.NODE_NAME == "edge-1"
        assert spread_settings.INLINE_MAX == 8192
        assert DEFAULTS["CHUNK_SIZE"] == spread_settings.CHUNK_SIZE


def test_override_settings_reloads_cached_values_and_restores_them() -> None:
    original = spread_settings.INLINE_MAX  # cached now
    with override_settings(SPREAD={"INLINE_MAX": 16, "CHUNK_SIZE": 64}):
        assert spread_settings.INLINE_MAX == 16
        assert spread_settings.CHUNK_SIZE == 64
    assert original == spread_settings.INLINE_MAX
    assert DEFAULTS["CHUNK_SIZE"] == spread_settings.CHUNK_SIZE


def test_nested_overrides_reload_each_time() -> None:
    with override_settings(SPREAD={"INLINE_MAX": 16}):
        assert spread_settings.INLINE_MAX == 16
        with override_settings(SPREAD={"INLINE_MAX": 32}):
            assert spread_settings.INLINE_MAX == 32
        assert spread_settings.INLINE_MAX == 16


def test_unrelated_setting_changes_do_not_drop_overrides() -> None:
    with override_settings(SPREAD={"INLINE_MAX": 16}):
        assert spread_settings.INLINE_MAX == 16
        with override_settings(DEBUG=True):
            assert spread_settings.INLINE_MAX == 16


def test_unknown_key_in_spread_raises() -> None:
    with override_settings(SPREAD={"INLINE_MAXX": 1}), pytest.raises(AttributeError):
        _ = spread_settings.INLINE_MAX
    # Once the bad setting is gone, reading works again.
    assert DEFAULTS["INLINE_MAX"] == spread_settings.INLINE_MAX


def test_unknown_key_error_names_the_unknown_key() -> None:
    with override_settings(SPREAD={"INLINE_MAXX": 1}), pytest.raises(AttributeError) as raised:
        _ = spread_settings.INLINE_MAX
    assert "INLINE_MAXX" in str(raised.value)


def test_reading_an_unknown_attribute_raises() -> None:
    with pytest.raises(AttributeError, match="NO_SUCH_SETTING"):
        _ = spread_settings.NO_SUCH_SETTING


def test_a_separate_settings_object_uses_its_own_defaults() -> None:
    custom = SpreadSettings({"ONLY": 1})
    with override_settings(SPREAD={}):
        assert custom.ONLY == 1
        with pytest.raises(AttributeError):
            _ = custom.INLINE_MAX


# --- system checks ----------------------------------------------------------------------------


def test_default_settings_pass_the_checks() -> None:
    """Defaults pass on SQLite (blob files go beside its database, or to a directory of the
    process for an in-memory one); other databases must name the blob directory (E006)."""
    with override_settings(SPREAD={}):
        defaults = [error.id for error in check_spread_settings()]
    assert defaults == ([] if connection.vendor == "sqlite" else ["spread_core.E006"])
    assert spread_check_ids() == []
    assert spread_check_ids(NODE_NAME="n" * 255, INLINE_MAX=64, CHUNK_SIZE=64) == []


def test_a_file_blob_store_without_a_directory_for_postgresql_is_e006(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(connection, "vendor", "postgresql")
    errors = spread_checks(BLOB_STORE={"BACKEND": "spread_core.blobs.files.FileBlobStore"})
    assert [e.id for e in errors] == ["spread_core.E006"]
    assert "ROOT" in errors[0].hint and "DatabaseBlobStore" in errors[0].hint
    database = {"BACKEND": "spread_core.blobs.database.DatabaseBlobStore"}
    assert spread_check_ids(BLOB_STORE=database) == []


def test_a_blob_store_that_does_not_load_is_e005() -> None:
    assert spread_check_ids(BLOB_STORE="files") == ["spread_core.E005"]
    assert spread_check_ids(BLOB_STORE={"BACKEND": "spread_core.blobs.nowhere.Store"}) == ["spread_core.E005"]
    assert spread_check_ids(
        BLOB_STORE={"BACKEND": "spread_core.blobs.files.FileBlobStore", "OPTIONS": {"X": 1}}
    ) == ["spread_core.E005"]


def test_unknown_key_is_reported_as_e001_with_a_hint() -> None:
    with override_settings(SPREAD={"BOGUS": 1}):
        errors = check_spread_settings()
    assert [e.id for e in errors] == ["spread_core.E001"]
    assert "INLINE_MAX" in errors[0].hint


def test_e001_message_names_the_unknown_key() -> None:
    with override_settings(SPREAD={"BOGUS": 1}):
        errors = check_spread_settings()
    assert "BOGUS" in errors[0].msg


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("", id="empty"),
        pytest.param("n" * 256, id="256-bytes"),
        pytest.param("é" * 128, id="256-utf8-bytes"),
        pytest.param(42, id="not-a-string"),
        pytest.param(None, id="none"),
    ],
)
def test_bad_node_name_is_reported_as_e002(name: object) -> None:
    with override_settings(SPREAD={**WITH_BLOB_ROOT, "NODE_NAME": name}):
        errors = check_spread_settings()
    assert [e.id for e in errors] == ["spread_core.E002"]
    assert errors[0].hint


@pytest.mark.parametrize("key", ["INLINE_MAX", "CHUNK_SIZE", "MAX_UPLOAD"])
@pytest.mark.parametrize("value", [0, -1, "4096", 1.5, None])
def test_non_positive_or_non_integer_sizes_are_reported_as_e003(key: str, value: object) -> None:
    ids = spread_check_ids(**{key: value})
    assert ids == ["spread_core.E003"]


def test_every_bad_size_is_reported() -> None:
    assert spread_check_ids(INLINE_MAX=0, CHUNK_SIZE=0, MAX_UPLOAD=0) == ["spread_core.E003"] * 3


def test_inline_max_larger_than_chunk_size_is_reported_as_e004() -> None:
    with override_settings(SPREAD={**WITH_BLOB_ROOT, "INLINE_MAX": 65, "CHUNK_SIZE": 64}):
        errors = check_spread_settings()
    assert [e.id for e in errors] == ["spread_core.E004"]
    assert errors[0].hint


def test_checks_are_registered_with_django() -> None:
    with override_settings(SPREAD={**WITH_BLOB_ROOT, "NODE_NAME": "", "INLINE_MAX": 0}):
        ids = {e.id for e in run_checks() if e.id.startswith("spread_core.")}
    assert ids == {"spread_core.E002", "spread_core.E003"}
    with override_settings(SPREAD={**WITH_BLOB_ROOT, "INLINE_MAX": 65, "CHUNK_SIZE": 64}):
        ids = {e.id for e in run_checks() if e.id.startswith("spread_core.")}
    assert ids == {"spread_core.E004"}
