"""Typed dictionaries of Spread's wire and report formats."""

from __future__ import annotations

from typing import TypedDict


class _EventJSONBase(TypedDict):
    id: str
    path: str
    iteration: int
    date: int
    content_type: str
    size: int
    complete: bool
    deleted: bool


class EventJSON(_EventJSONBase, total=False):
    # "from" is a keyword, so the origin is added under that key by Event.as_json.
    value: str
    value_b64: str


class PropagationEntry(TypedDict):
    path: str
    subscribers: int


class PostReport(TypedDict):
    id: str
    path: str
    status: str
    iteration: int
    propagation: list[PropagationEntry]
