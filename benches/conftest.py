"""Benchmarks run only on request: ``pytest benches`` (see the README)."""
