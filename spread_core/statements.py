"""Plain SQL for the hottest statements of a write batch, built from the models' metadata.

Building a query through the ORM costs 0.2-0.9 ms of Python here (``select_related``, ``only``,
``bulk_update``'s CASE per row), several times what the database spends on it; a batch of one
write ran about ten of them. These are the same statements written once: the rows come back as
the same model instances the ORM would give (``Model.from_db``, unloaded fields deferred), so the
code that decides the writes (``batch_record``) does not change.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence
from functools import cache
from typing import Any

from django.db import connection
from django.db.models import Model

from .models import IN_BATCH, Counter, Event, Topic

#: What deciding a write needs of its topic's current event (attribute names).
CURRENT_NEEDS = frozenset({"iteration", "date", "origin", "deleted", "aborted"})


@cache  # once per model: ``_topic`` asks for every row
def _attnames(model: type[Model], wanted: frozenset[str] | None = None) -> tuple[str, ...]:
    """Attribute names of ``model``'s columns (those in ``wanted``), in the model's field order:
    the order ``Model.from_db`` takes values in."""
    return tuple(f.attname for f in model._meta.concrete_fields if wanted is None or f.attname in wanted)


def quoted_table(model: type[Model]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def quoted_column(model: type[Model], attname: str) -> str:
    field = next(f for f in model._meta.concrete_fields if f.attname == attname)
    return connection.ops.quote_name(field.column)


def _rows_in(select: str, values: Collection[Any]) -> Iterator[Sequence[Any]]:
    """The rows of ``select``, a statement ending in ``IN`` (its list is added), for ``values``:
    one statement per ``IN_BATCH`` values (more would exceed SQLite's bound parameters)."""
    ordered = list(values)
    with connection.cursor() as cursor:
        for start in range(0, len(ordered), IN_BATCH):
            chunk = ordered[start : start + IN_BATCH]
            cursor.execute(f"{select} ({', '.join(['%s'] * len(chunk))})", chunk)
            yield from cursor.fetchall()


def live_event_ids(event_ids: Collection[str]) -> set[str]:
    """Which of ``event_ids`` are stored and not aborted (the event id of a write is new almost
    always: only the ids are read)."""
    event_id, aborted = quoted_column(Event, "event_id"), quoted_column(Event, "aborted")
    select = f"SELECT {event_id} FROM {quoted_table(Event)} WHERE NOT {aborted} AND {event_id} IN"
    return {row[0] for row in _rows_in(select, event_ids)}


def topics_with_current(path_hashes: Collection[str]) -> list[Topic]:
    """The topics of ``path_hashes``, each with its current event holding only what deciding a
    write needs (``CURRENT_NEEDS``, the rest deferred), or None."""
    topic_table, event_table = quoted_table(Topic), quoted_table(Event)
    selected = ", ".join(
        [f"t.{quoted_column(Topic, name)}" for name in _attnames(Topic)]
        + [f"e.{quoted_column(Event, name)}" for name in _attnames(Event, CURRENT_NEEDS)]
    )
    join = f"e.{quoted_column(Event, 'iteration')} = t.{quoted_column(Topic, 'current_id')}"
    # e.iteration is NULL for a topic without a current event (LEFT JOIN)
    select = (
        f"SELECT {selected} FROM {topic_table} t LEFT JOIN {event_table} e ON {join} "
        f"WHERE t.{quoted_column(Topic, 'path_hash')} IN"
    )
    return [_topic(row) for row in _rows_in(select, path_hashes)]


def _topic(row: Sequence[Any]) -> Topic:
    topic_names, current_names = _attnames(Topic), _attnames(Event, CURRENT_NEEDS)
    topic = Topic.from_db(connection.alias, topic_names, row[: len(topic_names)])
    current = dict(zip(current_names, row[len(topic_names) :], strict=True))
    if current["iteration"] is None:
        topic.current = None
    else:  # SQLite gives booleans as integers (the ORM converts them)
        current.update(deleted=bool(current["deleted"]), aborted=bool(current["aborted"]))
        topic.current = Event.from_db(connection.alias, current_names, [current[n] for n in current_names])
    return topic


def insert_rows(rows: Sequence[Model]) -> None:
    """INSERT ``rows`` (instances of one model, not saved yet) with one statement run for each:
    every concrete column, converted by its field as ``save`` would, except an automatic primary
    key (the database numbers it; the ids are not read back). ``bulk_create`` spends more Python
    per row than the database spends storing it."""
    if not rows:
        return
    meta = rows[0]._meta
    fields = [f for f in meta.concrete_fields if not (f.primary_key and getattr(f, "db_returning", False))]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    statement = (
        f"INSERT INTO {quoted_table(type(rows[0]))} ({columns}) VALUES ({', '.join(['%s'] * len(fields))})"
    )
    values = [[f.get_db_prep_save(getattr(row, f.attname), connection) for f in fields] for row in rows]
    with connection.cursor() as cursor:
        cursor.executemany(statement, values)
    for row in rows:  # saved now, as ``bulk_create`` leaves them
        row._state.adding, row._state.db = False, connection.alias


def move_current(topics: Iterable[Topic]) -> None:
    """Store the current event and change iteration of ``topics``: one UPDATE run for each row
    (``bulk_update`` builds a CASE expression per row and field)."""
    statement = (
        f"UPDATE {quoted_table(Topic)} SET {quoted_column(Topic, 'current_id')} = %s, "
        f"{quoted_column(Topic, 'changed')} = %s WHERE {quoted_column(Topic, 'id')} = %s"
    )
    with connection.cursor() as cursor:
        cursor.executemany(statement, [(topic.current_id, topic.changed, topic.pk) for topic in topics])


def lock_counter(name: str) -> Counter | None:
    """The counter row ``name``, locked for the transaction where the database locks rows
    (SQLite's write transaction already holds the whole database); None when it does not exist."""
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {quoted_column(Counter, 'name')}, {quoted_column(Counter, 'value')} "
            f"FROM {quoted_table(Counter)} WHERE {quoted_column(Counter, 'name')} = %s{lock}",
            [name],
        )
        row = cursor.fetchone()
    return None if row is None else Counter.from_db(connection.alias, ("name", "value"), row)


def store_counter(counter: Counter) -> None:
    """Write the value of an existing counter row."""
    with connection.cursor() as cursor:
        value, name = quoted_column(Counter, "value"), quoted_column(Counter, "name")
        cursor.execute(
            f"UPDATE {quoted_table(Counter)} SET {value} = %s WHERE {name} = %s",
            [counter.value, counter.name],
        )
