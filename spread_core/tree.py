"""The path tree: every topic row knows its parent, and the ancestors of a topic exist as rows
(without a value), so a level of the tree is an indexed query (``parent``, ``name``)."""

from __future__ import annotations

from .models import Topic, path_hash
from .paths import SEPARATOR


def _split(canonical: str) -> tuple[str, str]:
    parent, _, name = canonical.rpartition(SEPARATOR)
    return parent, name


def node(canonical: str) -> Topic:
    """The topic row of ``canonical`` (created with its missing ancestors); in a write
    transaction, so that concurrent writers never create the same row twice."""
    topic = Topic.objects.filter(path_hash=path_hash(canonical)).first()
    if topic is not None:
        return topic
    parent_path, name = _split(canonical)
    parent = node(parent_path) if parent_path else None
    topic, _ = Topic.objects.get_or_create(
        path_hash=path_hash(canonical),
        defaults={"path": canonical, "depth": canonical.count(SEPARATOR) + 1, "name": name, "parent": parent},
    )
    return topic
