"""Doorbells between node processes: one message per commit carrying every changed prefix, each
process ringing only its own subscribers and skipping its own messages."""

from __future__ import annotations

from spread_core.checks import check_spread_settings
from spread_core.process_doorbells import PROCESS_ID, count_group_name, doorbell, rung_prefixes

from .blob_stores import spread_with


def test_a_doorbell_of_another_process_rings_its_prefixes() -> None:
    message = {**doorbell({"": 7, "a": 7, "a/b": 7}), "from": "another-process"}
    assert rung_prefixes(message) == {"": 7, "a": 7, "a/b": 7}


def test_a_doorbell_of_this_process_rings_nothing_through_the_layer() -> None:
    message = doorbell({"a": 3})
    assert message["from"] == PROCESS_ID
    assert rung_prefixes(message) == {}


def test_a_malformed_doorbell_rings_only_what_is_well_formed() -> None:
    assert rung_prefixes({"type": "x", "from": "other", "newest": ["a"]}) == {}
    assert rung_prefixes({"from": "other", "newest": {"a": "7", "b": 2, 3: 4}}) == {"b": 2}


def test_count_groups_are_valid_layer_names_distinct_from_doorbell_groups() -> None:
    from spread_core.fanout import group_name

    name = count_group_name("sensors/plant-3/" + "x" * 500)
    assert len(name) < 100 and name.isascii()
    assert name != group_name("sensors/plant-3/" + "x" * 500)


def test_an_unknown_doorbell_mode_is_e007() -> None:
    from django.test import override_settings

    with override_settings(SPREAD=spread_with(LAYER_DOORBELLS="broadcast")):
        assert [e.id for e in check_spread_settings()] == ["spread_core.E007"]
    with override_settings(SPREAD=spread_with(LAYER_DOORBELLS="subscriber")):
        assert check_spread_settings() == []
