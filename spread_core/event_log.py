"""The event log hook (``SPREAD["EVENT_LOG"]``): every accepted event, as JSON, to Python logging
(``"logging"``: logger ``spread.events``, level INFO) or to a callable named by dotted path, so
updates also land in a central log system. A failing hook is logged and never fails a write.

The receiver is connected only while the setting names a hook (``connect``, called at start-up and
whenever ``SPREAD`` changes): a sync receiver of ``event_accepted`` costs every write made on an
event loop a hop to a thread (``Signal.asend``), which a node without a hook should not pay."""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from typing import Any

from django.utils.module_loading import import_string

from .conf import spread_settings
from .merge import Outcome
from .models import Event
from .signals import event_accepted

LOGGING = "logging"
DISPATCH_UID = "spread-event-log"
logger = logging.getLogger("spread.events")
hook_logger = logging.getLogger(__name__)


@lru_cache(maxsize=8)
def _callable(dotted_path: str) -> Any:
    return import_string(dotted_path)


def event_record(event: Event, outcome: Outcome) -> dict[str, Any]:
    """The event JSON plus how it was merged and where it came from."""
    return {**event.as_json(), "status": outcome.value, "source": event.source or None}


def log_event(sender: Any, event: Event, outcome: Outcome, **kwargs: Any) -> None:
    """Receiver of ``event_accepted``."""
    hook = spread_settings.EVENT_LOG
    if not hook:
        return
    try:
        record = event_record(event, outcome)
        if hook == LOGGING:
            logger.info(json.dumps(record, separators=(",", ":"), ensure_ascii=False))
        else:
            _callable(hook)(record)
    except Exception:
        hook_logger.exception("SPREAD['EVENT_LOG'] failed for event %s", event.event_id)


def connect() -> None:
    """Connect ``log_event`` to ``event_accepted`` if ``SPREAD["EVENT_LOG"]`` names a hook, else
    disconnect it. ``SPREAD`` with an unknown key is left alone here: the system check reports it
    (E001) and every read of a setting raises until it is fixed."""
    try:
        hook = spread_settings.EVENT_LOG
    except AttributeError:
        return
    if hook:
        event_accepted.connect(log_event, dispatch_uid=DISPATCH_UID)
    else:
        event_accepted.disconnect(dispatch_uid=DISPATCH_UID)


def reconnect_on_change(*, setting: str, **kwargs: Any) -> None:
    """``setting_changed`` receiver (connected after the settings object's own, which reloads it)."""
    if setting == "SPREAD":
        connect()
