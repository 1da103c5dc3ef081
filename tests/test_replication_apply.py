"""Applying a peer's log entries (spread_core.replication.apply) and reading the log a peer asks
for (spread_core.replication.log): idempotence, all-or-nothing batches, no echo, prefix limits."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from spread_core import api
from spread_core.exceptions import InvalidFrame
from spread_core.iteration import current_iteration
from spread_core.models import Event, ReplicaCursor
from spread_core.replication import apply, log
from spread_core.replication.session import cursor_key

DATE = 1_764_130_000_000_000
PEER = "peer-node"
KEY = cursor_key(f"in:{PEER}", ["a"])


def entry(
    path: str, value: bytes | None, *, origin: str = "alice", date: int = DATE, **fields: Any
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "kind": "write",
        "iteration": 1,
        "id": "",
        "path": path,
        "from": origin,
        "date": date,
        "content_type": "text/plain",
        "deleted": value is None,
        "is_blob": False,
        "aborted": False,
        "size": len(value or b""),
        "complete": True,
        "sha256": "",
        **fields,
    }
    if value is not None:
        data["value_b64"] = base64.b64encode(value).decode()
    return data


@pytest.mark.django_db
def test_applying_the_same_entries_twice_stores_each_event_once() -> None:
    batch = [entry("a/x", b"one"), entry("a/y", b"two"), entry("a/x", b"newer", date=DATE + 1)]
    apply.apply_entries(KEY, PEER, ["a"], batch, upto=3)
    head = current_iteration()
    apply.apply_entries(KEY, PEER, ["a"], batch, upto=3)  # a crash before the cursor: re-sent
    assert Event.objects.count() == 3
    assert current_iteration() == head
    assert api.get("a/x").value == b"newer"  # type: ignore[union-attr]
    assert set(Event.objects.values_list("source", flat=True)) == {PEER}
    assert apply.cursor(KEY) == 3


@pytest.mark.django_db
def test_a_batch_with_one_bad_entry_changes_nothing_not_even_the_cursor() -> None:
    for bad in (entry("elsewhere/x", b"outside the link"), entry("a/z", b"x", kind="gossip"), "not an entry"):
        with pytest.raises(InvalidFrame):
            apply.apply_entries(KEY, PEER, ["a"], [entry("a/ok", b"fine"), bad], upto=2)
    assert Event.objects.count() == 0
    assert not ReplicaCursor.objects.exists()


@pytest.mark.django_db
def test_tombstones_and_equal_dates_merge_like_local_writes() -> None:
    api.post("a/t", b"local", origin="bob", date=DATE)
    apply.apply_entries(KEY, PEER, ["a"], [entry("a/t", b"remote", origin="alice", date=DATE)], upto=1)
    assert api.get("a/t").value == b"local"  # type: ignore[union-attr]  # equal dates: bob > alice
    assert Event.objects.get(origin="alice").too_late
    apply.apply_entries(KEY, PEER, ["a"], [entry("a/t", None, origin="carol", date=DATE + 5)], upto=2)
    assert api.get("a/t") is None


@pytest.mark.django_db
def test_the_log_leaves_out_the_asking_peer_own_events_and_reports_the_head() -> None:
    api.post("a/local", b"written here")
    apply.apply_entries(KEY, PEER, ["a"], [entry("a/remote", b"from the peer")], upto=1)
    api.post("b/other", b"another prefix")
    entries, upto, head = log.read_log(["a"], 0, exclude_source=PEER)
    assert [e["path"] for e in entries] == ["a/local"]
    assert entries[0]["value_b64"] == base64.b64encode(b"written here").decode()
    assert upto == entries[-1]["iteration"]
    assert head == current_iteration() == 3
    assert log.read_log(["a"], upto, exclude_source=PEER)[:2] == ([], 3)  # nothing newer: the head
    everything, _, _ = log.read_log([""], 0, exclude_source="nobody")
    assert [e["path"] for e in everything] == ["a/local", "a/remote", "b/other"]


@pytest.mark.django_db(transaction=True)
def test_a_batch_of_inline_entries_is_stored_set_based_then_rung_once_per_prefix_and_seen_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from spread_core import fanout
    from spread_core.clock import now_us

    api.post("a/x", b"local")
    assert api.get("a/x").value == b"local"  # type: ignore[union-attr]  # now in the value cache
    seen: list[tuple[str, str | None]] = []
    subscription = api.subscribe("a", lambda event: seen.append((event["path"], event.get("value"))))
    rung: list[dict[str, int]] = []
    ring_layer = fanout._ring_layer

    async def counting_ring(newest: dict[str, int]) -> dict[str, int]:
        rung.append(dict(newest))
        return await ring_layer(newest)

    monkeypatch.setattr(fanout, "_ring_layer", counting_ring)
    seen.clear()
    later = now_us() + 1_000_000  # newer than the local write
    batch = [
        entry("a/x", b"remote", date=later),
        entry("a/y", b"two"),
        entry("a/x", b"newer", date=later + 1),
        entry("a/z", None),
    ]
    apply.apply_entries(KEY, PEER, ["a"], batch, upto=4)
    assert subscription.wait_delivered(current_iteration())
    subscription.close()

    # read after the one commit: each topic once, at its newest event, in iteration order
    assert [path for path, _ in seen] == ["a/y", "a/x", "a/z"]
    assert api.get("a/x").value == b"newer"  # type: ignore[union-attr]  # the cache was told
    head = current_iteration()
    assert rung == [{"": head, "a": head, "a/x": head - 1, "a/y": head - 2, "a/z": head}]
    assert Event.objects.filter(source=PEER).count() == 4
