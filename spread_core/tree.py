"""The path tree: every topic row knows its parent, and the ancestors of a topic exist as rows
(without a value), so a level of the tree is an indexed query (``parent``, ``name``)."""

from __future__ import annotations

import itertools
from collections.abc import Collection, Mapping

from django.db import connection

from . import statements
from .models import Topic, path_hash
from .paths import SEPARATOR


def _split(canonical: str) -> tuple[str, str]:
    parent, _, name = canonical.rpartition(SEPARATOR)
    return parent, name


def _depth(canonical: str) -> int:
    return canonical.count(SEPARATOR) + 1


def _row(canonical: str, parent: Topic | None) -> Topic:
    name = _split(canonical)[1]
    return Topic(
        path=canonical, path_hash=path_hash(canonical), depth=_depth(canonical), name=name, parent=parent
    )


def node(canonical: str) -> Topic:
    """The topic row of ``canonical``, created with its missing ancestors. Call it inside a
    write transaction that holds the iteration counter (``iteration.lock_counter``): writers are
    serialised there, so a row found missing cannot be created by another writer meanwhile."""
    topic = Topic.objects.filter(path_hash=path_hash(canonical)).first()
    return topic if topic is not None else new_node(canonical)


def new_node(canonical: str) -> Topic:
    """Create the row of ``canonical``, known to be missing (see ``node``), and its ancestors."""
    parent_path = _split(canonical)[0]
    topic = _row(canonical, node(parent_path) if parent_path else None)
    topic.save(force_insert=True)
    return topic


def new_nodes(canonicals: Collection[str], known: Mapping[str, Topic]) -> dict[str, Topic]:
    """Create the rows of ``canonicals``, known to be missing, and their missing ancestors: the
    rows ``new_node`` would create for each, with one query for the ancestors not in ``known``
    (rows already at hand, by path) and one insert per depth, parents before children. Returns
    the new rows of ``canonicals`` by path. Same lock as ``node``."""
    wanted = set(canonicals)
    ancestors: set[str] = set()
    for canonical in wanted:
        parent = _split(canonical)[0]
        while parent and parent not in known and parent not in ancestors:
            ancestors.add(parent)
            parent = _split(parent)[0]
    ancestors -= wanted
    rows = dict(known)
    found = statements.topics_with_current([path_hash(path) for path in ancestors])
    rows.update((topic.path, topic) for topic in found)
    missing = sorted(wanted | (ancestors - rows.keys()), key=lambda path: (_depth(path), path))
    for _, level in itertools.groupby(missing, key=_depth):
        created = []
        for path in level:
            parent_path = _split(path)[0]
            created.append(_row(path, rows[parent_path] if parent_path else None))
        _insert(created)
        rows.update((topic.path, topic) for topic in created)
    return {canonical: rows[canonical] for canonical in wanted}


def _insert(topics: list[Topic]) -> None:
    if connection.features.can_return_rows_from_bulk_insert:
        Topic.objects.bulk_create(topics)
    else:  # SQLite before 3.35 gives no ids back from a multi-row insert: children need them
        for topic in topics:
            topic.save(force_insert=True)
