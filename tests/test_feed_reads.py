"""A feed's plain-SQL reads (``FEED_PLAIN_SQL``, spread_core.feed_reads) give exactly what the ORM
reads give: the same event JSON, in the same order, page by page, for any log (values,
tombstones, ties, too_late writes, uploads completed, aborted or in progress), prefix and cursor."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from django.test import override_settings
from hypothesis import given, settings
from hypothesis import strategies as st

from spread_core import subscriptions
from spread_core.blobs import blob_store
from spread_core.exceptions import TopicExists
from spread_core.iteration import current_iteration, write_transaction
from spread_core.models import Event
from spread_core.paths import TopicPath
from spread_core.store import abort_upload, finish_upload
from spread_core.subscriptions import read_after
from tests.test_group_commit_property import queued, reset, write_specs

from .blob_stores import spread_with

PREFIXES = ["", "a", "a/b", "c/a", "b", "zz"]
UPLOAD_ENDINGS = ["abort", "complete", "open"]


def build(specs: list[Any], endings: list[str]) -> None:
    reset()
    for number, spec in enumerate(specs):
        with contextlib.suppress(TopicExists), write_transaction():
            queued(spec, number)()
    started = Event.objects.filter(is_blob=True, complete=False, aborted=False).order_by("iteration")
    for event, ending in zip(list(started), endings, strict=False):
        if ending == "abort":
            abort_upload(event, "test")
        elif ending == "complete":
            finish_upload(event, size=blob_store().stored_size(event))


def pages(prefix: str, cursor: int, history: bool, plain: bool) -> list[tuple[list[Any], int]]:
    """Every page of ``read_after`` from ``cursor`` until it finds nothing more."""
    read: list[tuple[list[Any], int]] = []
    with override_settings(SPREAD=spread_with(FEED_PLAIN_SQL=plain)):
        while True:
            events, cursor = read_after(TopicPath.from_canonical(prefix), cursor, history=history)
            read.append((events, cursor))
            if not events:
                return read


@pytest.mark.django_db(transaction=True)
@settings(max_examples=50, deadline=None)
@given(
    specs=st.lists(write_specs, max_size=14),
    endings=st.lists(st.sampled_from(UPLOAD_ENDINGS), max_size=6),
    page=st.integers(1, 5),
    data=st.data(),
)
def test_plain_sql_feed_reads_equal_the_orm_reads(
    specs: list[Any], endings: list[str], page: int, data: st.DataObject
) -> None:
    build(specs, endings)
    head = current_iteration()
    cursor = data.draw(st.integers(0, head + 1), label="cursor")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(subscriptions, "PULL_BATCH", page)  # several pages, LIMIT exercised
        for prefix in PREFIXES:
            for history in (False, True):
                plain = pages(prefix, cursor, history, plain=True)
                assert plain == pages(prefix, cursor, history, plain=False), (prefix, history)


@pytest.mark.django_db(transaction=True)
def test_a_topic_left_without_value_by_an_abort_reads_as_its_aborted_event() -> None:
    # one blob upload, then aborted: the topic has no current event, and subscribers are told
    build([("a/b", 0, "x", "blob", False, "")], ["abort"])
    events, _ = pages("a", 0, False, plain=True)[0]
    assert [(e["path"], e.get("aborted"), e["complete"]) for e in events] == [("a/b", True, False)]
    assert events[0]["iteration"] == current_iteration()  # the abort's iteration, not the write's
