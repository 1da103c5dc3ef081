"""Spread API: the raw HTTP API (DRF), authentication, and the streaming upload ASGI layer."""
