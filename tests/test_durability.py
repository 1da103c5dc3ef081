"""Which commits wait for the disk: every write's, except the chunks of an unfinished upload
(a crash aborts the upload anyway; its completion is durable and syncs the log before it)."""

from __future__ import annotations

import pytest
from django.db import connection

from spread_core.iteration import write_transaction

pytestmark = pytest.mark.django_db(transaction=True)


def _setting() -> str:
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("PRAGMA synchronous")
        else:
            cursor.execute("SHOW synchronous_commit")
        return str(cursor.fetchone()[0])


DURABLE = {"sqlite": "2", "postgresql": "on"}  # the demo settings: synchronous=FULL / PostgreSQL's default
RELAXED = {"sqlite": "1", "postgresql": "off"}


def test_writes_are_durable_and_upload_chunks_are_not_and_the_setting_comes_back() -> None:
    assert _setting() == DURABLE[connection.vendor]
    with write_transaction():
        assert _setting() == DURABLE[connection.vendor]
    with write_transaction(durable=False):
        assert _setting() == RELAXED[connection.vendor]
    assert _setting() == DURABLE[connection.vendor]
    with pytest.raises(RuntimeError), write_transaction(durable=False):
        raise RuntimeError("a failed chunk")
    assert _setting() == DURABLE[connection.vendor]
