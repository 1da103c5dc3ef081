"""Values served from ``/raw/`` are data, never a page of the site: whatever bytes and content type
a writer stored, a browser must not run them with the site's origin (stored XSS).

Every raw response says ``X-Content-Type-Options: nosniff`` (no guessing HTML out of bytes), carries
a Content-Security-Policy that allows nothing and sandboxes the document (a rendered HTML or SVG
value gets an opaque origin and no scripts), and a value whose type browsers render as active
content is sent as an attachment.
"""

from __future__ import annotations

from typing import Any

from rest_framework.response import Response

RAW_CONTENT_SECURITY_POLICY = "default-src 'none'; sandbox; frame-ancestors 'none'"
#: Media types browsers render as documents that can run scripts or load other content.
ACTIVE_TYPES = frozenset(
    {
        "text/html",
        "application/xhtml+xml",
        "image/svg+xml",
        "text/xml",
        "application/xml",
        "text/xsl",
        "application/xslt+xml",
        "application/pdf",
        "text/javascript",
        "application/javascript",
        "application/ecmascript",
        "text/ecmascript",
        "application/x-shockwave-flash",
        "multipart/x-mixed-replace",
    }
)


def is_active(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type in ACTIVE_TYPES or media_type.endswith(("+xml", "/html"))


def protection_headers(stored_content_type: str | None) -> dict[str, str]:
    """The headers that keep a raw answer from acting as a page of the site's origin;
    ``stored_content_type`` is the type of a stored value being served (None: our own JSON)."""
    result = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": RAW_CONTENT_SECURITY_POLICY}
    if stored_content_type is not None and is_active(stored_content_type):
        result["Content-Disposition"] = "attachment"
    return result


def protect_raw(response: Any) -> Any:
    """Add ``protection_headers`` to a response. (A DRF ``Response`` is a JSON report or error of
    ours, whose content type is only set when it is rendered: it is never a stored value.)"""
    stored = None if isinstance(response, Response) else response.get("Content-Type", "")
    for name, value in protection_headers(stored).items():
        if name != "Content-Disposition" or not response.has_header(name):  # a download keeps its own
            response[name] = value
    return response
