"""Extension points: signals sent by the store."""

from __future__ import annotations

from django.dispatch import Signal

# Sent after an event was committed (status "ok" or "too_late").
# Arguments: sender=Event class, event: Event, outcome: merge.Outcome.
event_accepted = Signal()

# Sent after an upload broke off and its event was marked aborted.
# Arguments: sender=Event class, event: Event, reason: str.
upload_aborted = Signal()
