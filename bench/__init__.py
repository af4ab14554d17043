"""Benchmarks: ``python -m bench.backup_bench`` and ``python -m bench.restore_bench`` (see README.md)."""
