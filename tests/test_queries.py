"""Domain querysets: prefix matching is exact, byte for byte, on every backend."""

from __future__ import annotations

import pytest

from spread_core import api
from spread_core.models import Event, Topic


@pytest.mark.django_db
def test_under_matches_prefix_segments_case_sensitively() -> None:
    for path in ("a/x", "A/y", "ab/z", "a", "a%2Fb/c", "b/a"):
        api.post(path, b"v")
    assert sorted(Topic.objects.under("a").values_list("path", flat=True)) == ["a", "a/x"]
    assert sorted(Topic.objects.under("A").values_list("path", flat=True)) == ["A/y"]
    assert sorted(Topic.objects.under("a%2Fb").values_list("path", flat=True)) == ["a%2Fb/c"]
    assert Topic.objects.under("").count() == 6
    assert sorted(Event.objects.under("a").values_list("topic__path", flat=True)) == ["a", "a/x"]


@pytest.mark.django_db
def test_under_treats_like_wildcards_literally() -> None:
    api.post(["x_y", "1"], b"v")
    api.post(["x%y", "2"], b"v")
    api.post(["xzy", "3"], b"v")
    assert list(Topic.objects.under("x_y").values_list("path", flat=True)) == ["x_y/1"]
    assert list(Topic.objects.under(["x%y"]).values_list("path", flat=True)) == ["x%25y/2"]
