"""Benchmarks of a Spread node; run with ``python -m bench`` (or ``make bench``)."""
