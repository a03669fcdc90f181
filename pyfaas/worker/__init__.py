"""The Worker: connects to a Director, registers, runs calls in a thread pool.

- :mod:`.service`: :class:`Worker`, the connection, heartbeats, frames; it
  builds the parts below and gives each what it uses.
- :mod:`.core`: loaded functions, what is known per kind of call, running
  one call (no sockets).
- :mod:`.calls`: the calls read and not answered (counts, cancels, limits).
- :mod:`.replies`: the one queue every reply goes through.
- :mod:`.pool`: the threads taking turns reading and running calls.
- :mod:`.watchdog`: time limits, stuck quick calls, the graceful stop.
- :mod:`.cache`, :mod:`.persistence`: the result cache and the dump file.
- :mod:`.isolation`: child processes for ``isolation = "process"``.
"""

from .service import Worker

__all__ = ["Worker"]
