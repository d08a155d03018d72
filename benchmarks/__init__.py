"""Benchmarks: clearconv beside PyTorch on the same machine (see run.py)."""
