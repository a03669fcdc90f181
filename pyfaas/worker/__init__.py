"""The Worker: connects to a Director, registers, runs calls in a thread pool.

- :mod:`.service`: :class:`Worker`, the connection, heartbeats, frames.
- :mod:`.core`: loaded functions and running one call (no sockets).
- :mod:`.pool`: the threads taking turns reading and running calls.
- :mod:`.watchdog`: time limits, stuck quick calls, the graceful stop.
- :mod:`.cache`, :mod:`.persistence`: the result cache and the dump file.
- :mod:`.isolation`: child processes for ``isolation = "process"``.
"""

from .service import Worker

__all__ = ["Worker"]
