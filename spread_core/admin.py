"""Plain admin views of topics and events (the history app adds browsing and rollback)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin

from .models import Event, Peer, Topic
from .replication.peers import InvalidPeer, canonical_prefixes, normalise_url
from .replication.status import peer_cursor


@admin.register(Topic)
class TopicAdmin(admin.ModelAdmin):
    list_display = ["path", "current"]
    search_fields = ["path"]
    raw_id_fields = ["current"]
    readonly_fields = ["path", "depth", "current"]


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = [
        "iteration",
        "topic",
        "origin",
        "date",
        "size",
        "deleted",
        "too_late",
        "complete",
        "aborted",
    ]
    list_filter = ["deleted", "too_late", "complete", "aborted"]
    search_fields = ["topic__path", "origin"]
    raw_id_fields = ["topic"]
    exclude = ["value"]

    def has_add_permission(self, request: object) -> bool:
        return False

    def has_change_permission(self, request: object, obj: object = None) -> bool:
        return False


class PeerForm(forms.ModelForm):
    """The same validation as ``ensure_remote`` and ``spread_peer``."""

    class Meta:
        model = Peer
        fields = ["url", "token", "prefixes", "enabled"]

    def clean_url(self) -> str:
        return self._valid(normalise_url, self.cleaned_data["url"])

    def clean_prefixes(self) -> list[str]:
        prefixes = self.cleaned_data["prefixes"]
        if not isinstance(prefixes, list) or not all(isinstance(p, str) for p in prefixes):
            raise forms.ValidationError('A JSON list of path prefixes, e.g. ["sensors", "config/app"].')
        return self._valid(canonical_prefixes, prefixes)

    @staticmethod
    def _valid(check: Any, value: Any) -> Any:
        try:
            return check(value)
        except InvalidPeer as exc:
            raise forms.ValidationError(exc.detail) from exc


@admin.register(Peer)
class PeerAdmin(admin.ModelAdmin):
    """Outgoing replication links; the connector of a running node follows changes made here."""

    form = PeerForm

    list_display = [
        "url",
        "prefixes",
        "enabled",
        "remote_node",
        "connected",
        "cursor",
        "lag_events",
        "last_error",
    ]
    list_filter = ["enabled", "connected"]
    readonly_fields = [
        "remote_node",
        "connected",
        "cursor",
        "lag_events",
        "lag_seconds",
        "last_error",
        "last_seen",
    ]

    @admin.display(description="cursor (peer iteration applied)")
    def cursor(self, peer: Peer) -> int:
        return peer_cursor(peer)
