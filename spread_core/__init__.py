"""Spread core: topics, events, the last-writer-wins merge, blob storage and the Python API."""

__version__ = "0.1.0"
