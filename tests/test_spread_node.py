"""``spread_node``'s garbage-collector tuning (GC_THRESHOLDS, GC_FREEZE)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from django.test.utils import override_settings

from spread_core.management.commands.spread_node import tune_garbage_collector

from .blob_stores import spread_with


@pytest.fixture
def restored_collector() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_the_node_applies_its_thresholds_and_freezes_what_start_up_allocated(
    restored_collector: None,
) -> None:
    with override_settings(SPREAD=spread_with(GC_THRESHOLDS=(12_345, 7, 9), GC_FREEZE=True)):
        tune_garbage_collector()
    assert gc.get_threshold() == (12_345, 7, 9)
    assert gc.get_freeze_count() > 0


def test_none_keeps_pythons_collector_as_it_is(restored_collector: None) -> None:
    before = gc.get_threshold()
    with override_settings(SPREAD=spread_with(GC_THRESHOLDS=None, GC_FREEZE=False)):
        tune_garbage_collector()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
