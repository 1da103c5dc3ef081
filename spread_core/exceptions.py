"""The one exception family of Spread; the API layer turns these into JSON errors and error frames."""

from __future__ import annotations

from typing import Any


class SpreadError(Exception):
    """Base of every error Spread reports to a client: an HTTP status, a stable code, a detail."""

    status_code = 400
    default_code = "error"
    default_detail = "Spread error."

    def __init__(self, detail: str | None = None, *, code: str | None = None) -> None:
        self.detail = detail or self.default_detail
        self.code = code or self.default_code
        super().__init__(self.detail)

    def as_json(self) -> dict[str, Any]:
        return {"error": self.code, "detail": self.detail}


class InvalidPath(SpreadError):
    default_code = "invalid_path"
    default_detail = "Invalid topic path."


class InvalidHeader(SpreadError):
    default_code = "invalid_header"
    default_detail = "Invalid header."


class InvalidParameter(SpreadError):
    default_code = "invalid_parameter"
    default_detail = "Invalid query parameter."


class DateTooFarAhead(SpreadError):
    default_code = "date_too_far_ahead"
    default_detail = "The write's date is too far ahead of this node's clock."


class EmptyValue(SpreadError):
    default_code = "empty_body"
    default_detail = "A value needs a non-empty body; use DELETE to remove a topic."


class TopicNotFound(SpreadError):
    status_code = 404
    default_code = "not_found"
    default_detail = "No value at this path."


class RangeNotSatisfiable(SpreadError):
    """A byte range that starts past the end of the value (``size`` bytes)."""

    status_code = 416
    default_code = "range_not_satisfiable"
    default_detail = "The requested range starts past the end of the value."

    def __init__(self, size: int) -> None:
        super().__init__(f"The requested range starts past the end of the value ({size} bytes).")
        self.size = size


class TopicExists(SpreadError):
    """A create-only write found a value already there; ``event`` is the current one."""

    status_code = 409
    default_code = "exists"
    default_detail = "The topic already has a value."

    def __init__(self, event: Any, detail: str | None = None) -> None:
        super().__init__(detail)
        self.event = event

    def as_json(self) -> dict[str, Any]:
        return {**super().as_json(), "current": self.event.as_json()}


class ValueTooLarge(SpreadError):
    status_code = 413
    default_code = "too_large"
    default_detail = "The value is larger than the node accepts."


class UploadAborted(SpreadError):
    """The upload of this value broke off; no reader gets a truncated copy."""

    status_code = 409
    default_code = "upload_aborted"
    default_detail = "The upload of this value broke off before it completed."


class UploadTimeout(UploadAborted):
    status_code = 408
    default_code = "upload_timeout"
    default_detail = "No bytes arrived for too long; the upload was aborted."


class DigestMismatch(UploadAborted):
    status_code = 400
    default_code = "digest_mismatch"
    default_detail = "The SHA-256 of the received value does not match X-Spread-Sha256."


class Forbidden(SpreadError):
    status_code = 403
    default_code = "forbidden"
    default_detail = "You may not access this path."


class StoreUnavailable(SpreadError):
    status_code = 503
    default_code = "unavailable"
    default_detail = "The store is temporarily unavailable; retry shortly."


class StorageFull(SpreadError):
    """The database or the blob store has no room left; retrying does not help until space is
    freed (so not a 503)."""

    status_code = 507
    default_code = "insufficient_storage"
    default_detail = "The store has no room left for this write."


class FeatureDisabled(SpreadError):
    status_code = 404
    default_code = "disabled"
    default_detail = "This feature is switched off on this node."


class ClientDisconnected(UploadAborted):
    status_code = 400
    default_code = "client_disconnected"
    default_detail = "The client went away before the upload ended."


# Realtime connections (websocket frames, subscription parameters) -------------------------------


class InvalidFrame(SpreadError):
    """A client frame or subscription parameter that cannot be understood."""

    default_code = "bad_frame"
    default_detail = "Malformed frame."


class TooManySubscriptions(SpreadError):
    default_code = "too_many_subscriptions"
    default_detail = "This connection holds the maximum number of subscriptions."


class NotSubscribed(SpreadError):
    default_code = "not_subscribed"
    default_detail = "No subscription to this path on this connection."
