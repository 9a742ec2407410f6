"""The benchmark's page-fault counts (``time_ratio``'s ``*_faults``): counted, not timed."""

import pytest
import torch

from benchmarks.common import time_ratio


def _fresh_64mib():
    # 64 MiB is above glibc's largest mmap threshold (32 MiB): every call maps new pages and writes them
    torch.empty(16 * 2**20).fill_(1.0)


def test_fresh_buffers_show_as_page_faults_and_nothing_does_not():
    r = time_ratio(lambda: None, _fresh_64mib, rounds=2, min_run_time=0.001)
    if r["native_faults"] is None:
        pytest.skip("this OS keeps no page-fault counter")
    assert r["native_faults"] < 1
    assert r["manual_faults"] >= 32  # 16384 pages of 4 KiB, or 32 of 2 MiB with transparent huge pages
