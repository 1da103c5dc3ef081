"""The path tree: every topic row knows its parent, and the ancestors of a topic exist as rows
(without a value), so a level of the tree is an indexed query (``parent``, ``name``)."""

from __future__ import annotations

from .models import Topic, path_hash
from .paths import SEPARATOR


def _split(canonical: str) -> tuple[str, str]:
    parent, _, name = canonical.rpartition(SEPARATOR)
    return parent, name


def node(canonical: str) -> Topic:
    """The topic row of ``canonical``, created with its missing ancestors. Call it inside a
    write transaction that holds the iteration counter (``iteration.lock_counter``): writers are
    serialised there, so a row found missing cannot be created by another writer meanwhile."""
    topic = Topic.objects.filter(path_hash=path_hash(canonical)).first()
    return topic if topic is not None else new_node(canonical)


def new_node(canonical: str) -> Topic:
    """Create the row of ``canonical``, known to be missing (see ``node``), and its ancestors."""
    parent_path, name = _split(canonical)
    parent = node(parent_path) if parent_path else None
    depth = canonical.count(SEPARATOR) + 1
    return Topic.objects.create(
        path=canonical, path_hash=path_hash(canonical), depth=depth, name=name, parent=parent
    )
