"""This process's memory and CPU time, as heartbeats and the Director's
status document report them (pyfaas/usage.py)."""

import os
import time

from pyfaas import usage


def test_resident_memory_is_a_plausible_number_of_bytes():
    rss = usage.rss_bytes()
    assert rss is not None and 1024 * 1024 < rss < 64 * 1024 ** 3


def test_cpu_seconds_grow_with_work():
    before = usage.cpu_seconds()
    end = time.process_time() + 0.05
    while time.process_time() < end:
        pass
    assert usage.cpu_seconds() >= before + 0.04


def test_figures_name_this_process():
    figures = usage.figures()
    assert figures["pid"] == os.getpid()
    assert set(figures) == {"pid", "cpu_seconds", "rss_bytes"}
