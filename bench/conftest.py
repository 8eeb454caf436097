"""Benchmarks run with: .venv/bin/pytest bench --benchmark-enable (see bench/RESULTS.md)."""
