"""Spread history: admin browsing, rollback and playback of past events (see the history issue)."""
