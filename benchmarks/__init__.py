"""Benchmarks of manual_autograd against torch.nn: time and memory kept for backward.

Run ``python -m benchmarks --help``. Utilities for new cases live in :mod:`benchmarks.common`.
"""
