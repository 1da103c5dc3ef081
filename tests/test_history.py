"""History: values as of an iteration or a date, the JSON timeline, rollback of a topic and of a
subtree, and the history admin driven through Django's real admin with a logged-in operator."""

from __future__ import annotations

import html
import json
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from spread_api.tokens import device_token
from spread_core import api
from spread_core.iteration import current_iteration
from spread_core.models import Event, Topic, path_hash
from spread_core.paths import TopicPath
from spread_core.reader import event_as_of, topic_at
from spread_core.tree import node as tree_node
from spread_history.rollback import plan_rollback, rollback

from .blob_stores import spread_with

DATE = 1_764_130_000_000_000
pytestmark = pytest.mark.django_db


def value_at(path: str, **point: int) -> bytes | None:
    topic = topic_at(TopicPath.from_canonical(path))
    event = event_as_of(topic, **point) if topic else None
    return None if event is None else bytes(event.value or b"")


def test_the_value_as_of_an_iteration_or_a_date_follows_the_merge_rule() -> None:
    first = api.post("h/a", b"one", origin="alice", date=DATE)["iteration"]
    second = api.post("h/a", b"two", origin="alice", date=DATE + 10)["iteration"]
    late = api.post("h/a", b"late", origin="bob", date=DATE + 5)["iteration"]  # too_late
    gone = api.delete("h/a", origin="carol", date=DATE + 20)["iteration"]
    assert value_at("h/a", at=first - 1) is None
    assert value_at("h/a", at=first) == b"one"
    assert value_at("h/a", at=second) == b"two"
    assert value_at("h/a", at=late) == b"two"
    assert value_at("h/a", at=gone) is None
    assert value_at("h/a", at_date=DATE + 7) == b"late"  # by date, bob's write was the latest then
    assert value_at("h/a", at_date=DATE - 1) is None


@pytest.mark.django_db(transaction=True)
def test_a_raw_get_with_at_or_at_date_returns_the_past_value_and_bad_values_are_400() -> None:
    first = api.post("h/b", b"old", date=DATE)["iteration"]
    api.post("h/b", b"new", date=DATE + 1)
    client = Client()
    assert client.get("/raw/h/b", {"at": first}).content == b"old"
    assert client.get("/raw/h/b", {"at_date": DATE + 1}).content == b"new"
    assert client.get("/raw/h/b").content == b"new"
    assert client.get("/raw/h/b", {"at": 0}).status_code == 404
    bad = client.get("/raw/h/b", {"at": "-3"})
    assert (bad.status_code, bad.json()["error"]) == (400, "invalid_parameter")


def test_the_history_endpoint_pages_through_every_event_with_its_status() -> None:
    api.post("h/c", b"v1", origin="alice", date=DATE)
    api.post("h/c", b"v2", origin="alice", date=DATE + 2)
    api.post("h/c", b"lost", origin="bob", date=DATE + 1)
    api.delete("h/c", origin="alice", date=DATE + 3)
    api.post("h/c", b"v3", origin="alice", date=DATE + 4)
    client = Client()
    page = client.get("/history/h/c", {"limit": 3}).json()
    assert [e["status"] for e in page["events"]] == ["superseded", "superseded", "too_late"]
    rest = client.get("/history/h/c", {"after": page["next_after"]}).json()
    assert [e["status"] for e in rest["events"]] == ["deleted", "current"]
    assert rest["next_after"] is None
    assert rest["current"] == rest["events"][-1]["id"]
    assert client.get("/history/h/never").status_code == 404
    assert client.get("/history/h/c", {"limit": "x"}).status_code == 400


def test_a_subtree_rollback_restores_values_deletes_newer_topics_and_adds_to_history() -> None:
    api.post("r/a", b"a1", date=DATE)
    api.post("r/b", b"b1", date=DATE)
    api.delete("r/gone", date=DATE)
    point = current_iteration()
    api.post("r/a", b"a2", date=DATE + 1)
    api.post("r/new", b"created later", date=DATE + 1)
    api.post("r/gone", b"revived", date=DATE + 1)
    api.post("elsewhere/x", b"untouched", date=DATE + 1)
    events_before, head_before = Event.objects.count(), current_iteration()

    plan = {change.path: change.action for change in plan_rollback(TopicPath.from_canonical("r"), at=point)}
    assert plan == {"r/a": "restore", "r/new": "delete", "r/gone": "delete"}
    reports = rollback(TopicPath.from_canonical("r"), origin="operator", at=point)
    assert {r["status"] for r in reports} == {"ok"}
    assert api.get("r/a").value == b"a1"  # type: ignore[union-attr]
    assert api.get("r/b").value == b"b1"  # type: ignore[union-attr]
    assert api.get("r/new") is None and api.get("r/gone") is None
    assert api.get("elsewhere/x").value == b"untouched"  # type: ignore[union-attr]
    new_events = Event.objects.filter(iteration__gt=head_before)
    assert Event.objects.count() == events_before + 3
    assert {e.origin for e in new_events} == {"operator"}
    assert plan_rollback(TopicPath.from_canonical("r"), at=point) == []  # nothing left to change


def test_a_rollback_wins_over_values_dated_in_the_future() -> None:
    future = 4_000_000_000_000_000  # year 2096
    api.post("f/x", b"good", date=DATE)
    point = current_iteration()
    api.post("f/x", b"bad, from a skewed clock", date=future)
    rollback(TopicPath.from_canonical("f"), origin="operator", at=point)
    assert api.get("f/x").value == b"good"  # type: ignore[union-attr]
    assert Event.objects.filter(topic__path="f/x").order_by("-iteration").first().date == future + 1  # type: ignore[union-attr]


# --- the admin ------------------------------------------------------------------------------------


def operator(*permissions: str, username: str = "operator") -> Client:
    user = get_user_model().objects.create_user(username, password="pw", is_staff=True)
    for codename in ("view_topichistory", *permissions):
        user.user_permissions.add(Permission.objects.get(codename=codename))
    client = Client()
    client.force_login(user)
    return client


def admin_url(name: str, *args: Any) -> str:
    return reverse(f"admin:spread_history_topichistory_{name}", args=args)


def test_operators_browse_the_tree_level_by_level_and_see_a_timeline_with_previews() -> None:
    api.post("plant/temp", b"21.5", content_type="text/plain", origin="sensor-1")
    api.post("plant/config", json.dumps({"mode": "eco", "max": 3}).encode(), content_type="application/json")
    api.post("plant/raw", bytes(range(256)), content_type="application/octet-stream")
    api.post("plant/line/a", b"deeper", origin="sensor-2")
    api.post("other/x", b"not under plant")
    client = operator()
    root = client.get(admin_url("changelist")).content.decode()
    assert ">plant/</a>" in root and ">other/</a>" in root
    level = client.get(admin_url("changelist"), {"prefix": "plant"}).content.decode()
    assert all(f">{name}" in level for name in ("temp", "config", "raw", "line/"))
    assert "other" not in level.split('id="tree"')[1]
    assert "sensor-1" in level
    jumped = client.get(admin_url("changelist"), {"q": "plant/line"}).content.decode()
    assert "sensor-2" in jumped and "sensor-1" not in jumped.split('id="tree"')[1]
    filtered = client.get(admin_url("changelist"), {"prefix": "plant", "origin": "sensor-1"}).content.decode()
    assert ">temp<" in filtered and ">config<" not in filtered
    assert "No topic has the path" in client.get(admin_url("changelist"), {"q": "nowhere"}).content.decode()

    topic = Topic.objects.get(path="plant/config")
    page = html.unescape(client.get(admin_url("timeline", topic.pk)).content.decode())
    assert '{\n  "mode": "eco",\n  "max": 3\n}' in page  # pretty-printed JSON
    assert 'class="spread-activity"' in page
    raw = client.get(admin_url("timeline", Topic.objects.get(path="plant/raw").pk)).content.decode()
    assert "00000000  00 01 02 03" in raw  # hex preview
    assert "restore this version" not in page  # no rollback permission
    download = client.get(admin_url("download", topic.pk, topic.current_id))
    assert json.loads(b"".join(download.streaming_content)) == {"mode": "eco", "max": 3}


def test_a_tree_level_costs_the_same_queries_for_30_or_300_children() -> None:
    client = operator()

    def queries(count: int) -> int:
        for i in range(count):
            api.post(f"scale{count}/t{i:04d}", b"v")
        with CaptureQueriesContext(connection) as captured:
            response = client.get(admin_url("changelist"), {"prefix": f"scale{count}"})
        assert response.status_code == 200 and f"{count} entries" in response.content.decode()
        return len(captured.captured_queries)

    assert queries(30) == queries(300)


def test_a_level_of_100000_topics_is_paginated_with_a_few_indexed_queries() -> None:
    parent = tree_node("big")
    Topic.objects.bulk_create(
        Topic(
            path=f"big/n{i:06d}",
            path_hash=path_hash(f"big/n{i:06d}"),
            depth=2,
            name=f"n{i:06d}",
            parent=parent,
        )
        for i in range(100_000)
    )
    client = operator()
    with CaptureQueriesContext(connection) as captured:
        page = client.get(admin_url("changelist"), {"prefix": "big", "page": "500"}).content.decode()
    assert "page 500 of 1000 (100000 entries)" in page
    assert ">n049900<" in page and ">n049999<" in page
    tree_queries = [q["sql"] for q in captured.captured_queries if "spread_core_topic" in q["sql"]]
    assert len(tree_queries) <= 5
    assert all("parent_id" in sql or "path_hash" in sql for sql in tree_queries)


def test_conflict_losers_and_activity_are_listed() -> None:
    api.post("race/x", b"first", origin="alice", date=DATE + 10)
    api.post("race/x", b"late", origin="bob", date=DATE)  # too_late
    api.post("race/y", b"overtaken", origin="carol", date=DATE)
    api.post("race/y", b"winner", origin="dave", date=DATE + 1000)  # 1 ms later, another origin
    api.post("race/z", b"v1", origin="erin", date=DATE)
    api.post("race/z", b"v2", origin="erin", date=DATE + 1000)  # same origin: no conflict
    client = operator("rollback_topic")
    page = client.get(admin_url("conflicts")).content.decode()
    table = page.split('id="conflicts"')[1]
    assert "bob" in table and "carol" in table and "erin" not in table
    assert "promote (restore)" in table
    chart = client.get(admin_url("activity"), {"prefix": "race"}).content.decode()
    assert "6 write(s) under race" in chart and "<rect" in chart


def test_restore_asks_for_confirmation_then_writes_a_new_event_from_the_operator() -> None:
    old = api.post("cfg/app", b"version 1", content_type="text/plain")
    api.post("cfg/app", b"version 2 (bad)", content_type="text/plain")
    topic = Topic.objects.get(path="cfg/app")
    assert (
        operator(username="viewer").get(admin_url("restore", topic.pk, old["iteration"])).status_code == 403
    )
    client = operator("rollback_topic")
    timeline = client.get(admin_url("timeline", topic.pk)).content.decode()
    assert "restore this version" in timeline
    confirm = client.get(admin_url("restore", topic.pk, old["iteration"]))
    assert "Yes, restore this version" in confirm.content.decode()
    assert api.get("cfg/app").value == b"version 2 (bad)"  # type: ignore[union-attr]  # nothing yet
    done = client.post(admin_url("restore", topic.pk, old["iteration"]))
    assert done.status_code == 302
    current = api.get("cfg/app")
    assert current is not None and current.value == b"version 1" and current.origin == "operator"
    assert Event.objects.filter(topic=topic).count() == 3  # history is append-only

    diff = client.get(admin_url("timeline", topic.pk), {"a": old["iteration"], "b": current.iteration})
    assert "iteration" in diff.content.decode() and "Diff" in diff.content.decode()


def test_subtree_rollback_shows_a_preview_then_applies_on_confirmation() -> None:
    api.post("site/a", b"a1")
    point = current_iteration()
    api.post("site/a", b"a2")
    api.post("site/b", b"created after")
    client = operator("rollback_topic")
    preview = client.get(admin_url("rollback"), {"prefix": "site", "to": str(point)}).content.decode()
    assert "2 topic(s) will change" in preview
    assert "site/b" in preview and "deleted (tombstone)" in preview
    assert api.get("site/a").value == b"a2"  # type: ignore[union-attr]  # a preview changes nothing
    bad = client.get(admin_url("rollback"), {"prefix": "site", "to": "next tuesday"}).content.decode()
    assert "Give an iteration" in bad
    done = client.post(admin_url("rollback"), {"prefix": "site", "to": str(point), "confirm": "1"})
    assert done.status_code == 302
    assert api.get("site/a").value == b"a1"  # type: ignore[union-attr]
    assert api.get("site/b") is None


def test_a_token_user_cannot_reach_the_admin_views() -> None:
    headers = {"HTTP_AUTHORIZATION": f"Bearer {device_token('device')}"}
    response = Client().get(admin_url("rollback"), **headers)
    assert response.status_code == 302  # to the admin login page
    assert "/admin/login/" in response["Location"]


# --- the event log hook ---------------------------------------------------------------------------

received: list[dict[str, Any]] = []


def collect(record: dict[str, Any]) -> None:
    received.append(record)


def explode(record: dict[str, Any]) -> None:
    raise RuntimeError("the log system is down")


@pytest.mark.django_db(transaction=True)
def test_the_event_log_hook_sends_every_accepted_event_to_logging_or_a_callable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from django.test import override_settings

    with (
        override_settings(SPREAD=spread_with(EVENT_LOG="logging")),
        caplog.at_level("INFO", logger="spread.events"),
    ):
        api.post("log/a", b"to the log", origin="alice")
    logged = [json.loads(r.getMessage()) for r in caplog.records if r.name == "spread.events"]
    assert [(r["path"], r["value"], r["from"], r["status"]) for r in logged] == [
        ("log/a", "to the log", "alice", "ok")
    ]

    received.clear()
    with override_settings(SPREAD=spread_with(EVENT_LOG="tests.test_history.collect")):
        api.post("log/b", b"late", origin="bob", date=DATE)
        api.post("log/b", b"later", origin="bob", date=DATE + 1)
        api.post("log/b", b"too late", origin="bob", date=DATE - 1)
    assert [r["status"] for r in received] == ["ok", "ok", "too_late"]

    with override_settings(SPREAD=spread_with(EVENT_LOG="tests.test_history.explode")):
        assert api.post("log/c", b"still stored")["status"] == "ok"  # a broken hook never fails a write
    assert api.get("log/c").value == b"still stored"  # type: ignore[union-attr]


@pytest.mark.django_db(transaction=True)
def test_the_event_log_hook_is_connected_only_while_configured_so_async_writes_skip_the_thread_hop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import asyncio

    from django.test import override_settings

    from spread_core.signals import event_accepted

    assert not event_accepted.has_listeners(Event)  # no hook: Signal.asend calls nothing sync
    with (
        override_settings(SPREAD=spread_with(EVENT_LOG="logging")),
        caplog.at_level("INFO", logger="spread.events"),
    ):
        assert event_accepted.has_listeners(Event)
        asyncio.run(api.apost("log/async", b"from the loop"))
    assert [json.loads(r.getMessage())["path"] for r in caplog.records if r.name == "spread.events"] == [
        "log/async"
    ]
    assert not event_accepted.has_listeners(Event)


def test_the_retention_page_counts_expired_events_and_prunes_on_confirmation() -> None:
    from django.test import override_settings

    for i in range(3):
        api.post("ret/x", f"v{i}", date=DATE + i)
    assert operator(username="viewer").get(admin_url("retention")).status_code == 403
    client = operator("prune_history")
    with override_settings(SPREAD=spread_with(RETENTION={"KEEP_LAST": 1})):
        page = client.get(admin_url("retention")).content.decode()
        assert "2 event(s) expired" in page
        assert Event.objects.filter(topic__path="ret/x").count() == 3  # the page changes nothing
        assert client.post(admin_url("retention")).status_code == 302
    assert [bytes(e.value) for e in Event.objects.filter(topic__path="ret/x")] == [b"v2"]


def test_the_history_and_rollback_commands() -> None:
    import io

    from django.core.management import call_command
    from django.core.management.base import CommandError

    first = api.post("cmd/a", b"one", origin="alice")["iteration"]
    api.post("cmd/a", b"two", origin="bob")
    out = io.StringIO()
    call_command("spread_history", "cmd/a", stdout=out)
    lines = out.getvalue().splitlines()
    assert "superseded" in lines[1] and "alice" in lines[1]
    assert "current" in lines[2] and "bob" in lines[2]
    as_json = io.StringIO()
    call_command("spread_history", "cmd/a", "--json", stdout=as_json)
    assert [e["status"] for e in json.loads(as_json.getvalue())["events"]] == ["superseded", "current"]
    with pytest.raises(CommandError):
        call_command("spread_history", "cmd/nothing")

    dry = io.StringIO()
    call_command("spread_rollback", "cmd", "--to", str(first), "--dry-run", stdout=dry)
    assert "cmd/a: value of iteration" in dry.getvalue() and "dry run" in dry.getvalue()
    assert api.get("cmd/a").value == b"two"  # type: ignore[union-attr]
    call_command("spread_rollback", "cmd", "--to", str(first), "--origin", "ops", stdout=io.StringIO())
    current = api.get("cmd/a")
    assert current is not None and (current.value, current.origin) == (b"one", "ops")
    with pytest.raises(CommandError):
        call_command("spread_rollback", "cmd", "--to", "yesterday-ish")
