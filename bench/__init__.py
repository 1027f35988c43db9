"""Benchmarks: each writes its figures into its own section of BENCHMARKS.md."""
