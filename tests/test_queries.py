"""Domain querysets: prefix matching is exact, byte for byte, on every backend."""

from __future__ import annotations

import pytest

from spread_core import api
from spread_core.models import Event, Topic


@pytest.mark.django_db
def test_under_matches_prefix_segments_case_sensitively() -> None:
    for path in ("a/x", "A/y", "ab/z", "a", "a%2Fb/c", "b/a"):
        api.post(path, b"v")
    assert sorted(Topic.objects.under("a").written().values_list("path", flat=True)) == ["a", "a/x"]
    assert sorted(Topic.objects.under("A").written().values_list("path", flat=True)) == ["A/y"]
    assert sorted(Topic.objects.under("a%2Fb").written().values_list("path", flat=True)) == ["a%2Fb/c"]
    assert Topic.objects.under("").written().count() == 6
    assert sorted(Event.objects.under("a").values_list("topic__path", flat=True)) == ["a", "a/x"]


@pytest.mark.django_db
def test_under_treats_like_wildcards_literally() -> None:
    api.post(["x_y", "1"], b"v")
    api.post(["x%y", "2"], b"v")
    api.post(["xzy", "3"], b"v")
    assert list(Topic.objects.under("x_y").written().values_list("path", flat=True)) == ["x_y/1"]
    assert list(Topic.objects.under(["x%y"]).written().values_list("path", flat=True)) == ["x%25y/2"]


@pytest.mark.django_db
def test_every_topic_has_its_ancestors_as_tree_nodes_without_values() -> None:
    api.post("plant/line-1/temp", b"21")
    api.post("plant/line-2/temp", b"22")
    api.post("plant", b"the plant itself")
    nodes = {t.path: t for t in Topic.objects.select_related("parent")}
    assert set(nodes) == {"plant", "plant/line-1", "plant/line-2", "plant/line-1/temp", "plant/line-2/temp"}
    assert nodes["plant/line-1/temp"].parent == nodes["plant/line-1"]
    assert nodes["plant/line-1"].parent == nodes["plant"] and nodes["plant"].parent is None
    assert [t.name for t in nodes["plant"].children.order_by("name")] == ["line-1", "line-2"]
    assert nodes["plant/line-1"].current is None and nodes["plant"].current is not None
    assert sorted(Topic.objects.written().values_list("path", flat=True)) == [
        "plant",
        "plant/line-1/temp",
        "plant/line-2/temp",
    ]
