"""This process's use of the machine: resident memory and CPU time.

Owns reading them cheaply (no threads, nothing kept), for the Director's
status document and the figures a Worker sends in its heartbeats: the
resident set size from ``/proc/self/statm`` on Linux (elsewhere the peak
from ``getrusage``, the best the standard library offers), and the CPU
time as user plus system seconds from ``os.times()``.
"""

import os
import sys

try:
    import resource
except ImportError:  # not POSIX
    resource = None

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes():
    """Resident memory of this process in bytes (None if unknown)."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        pass
    if resource is None:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # (KiB there)


def cpu_seconds():
    """CPU time used by this process so far (user + system, seconds)."""
    times = os.times()
    return times.user + times.system


def figures():
    """``{"pid", "cpu_seconds", "rss_bytes"}`` of this process."""
    return {"pid": os.getpid(), "cpu_seconds": round(cpu_seconds(), 3),
            "rss_bytes": rss_bytes()}
