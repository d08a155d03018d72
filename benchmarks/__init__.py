"""Benchmarks: convnet beside PyTorch on the same machine (see run.py)."""
