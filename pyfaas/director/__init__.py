"""The Director: the one listening process, routing clients' requests to Workers.

- :mod:`.loop`: the ``selectors`` event loop (:class:`Director`), the
  only code that touches sockets; :mod:`.conn`: one accepted connection's
  buffers; :mod:`.admission`: which connections are let in.
- :mod:`.state`: :class:`DirectorState`, every decision, with no I/O,
  made of explicit parts around one :mod:`.cluster` (the tables) and one
  :mod:`.outbox` (frames to send): :mod:`.handshake`, :mod:`.workers`,
  :mod:`.functions`, :mod:`.calls`, :mod:`.queries`, :mod:`.workflows`,
  :mod:`.deaths`, :mod:`.grace`, and :mod:`.monitor` with its
  :mod:`.tallies`; records in :mod:`.tables`.
- :mod:`.monitoring`: the optional read-only HTTP endpoint.
"""

from .loop import Director
from .state import DirectorState

__all__ = ["Director", "DirectorState"]
