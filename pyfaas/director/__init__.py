"""The Director: the one listening process, routing clients' requests to Workers.

- :mod:`.loop`: the ``selectors`` event loop (:class:`Director`); it only
  moves bytes.
- :mod:`.state`: :class:`DirectorState`, every decision, with no I/O.
- the handlers :mod:`.state` uses: :mod:`.handshake`, :mod:`.workers`,
  :mod:`.requests`, :mod:`.workflows`; records in :mod:`.tables`;
  the loop's writing side in :mod:`.output`.
"""

from .loop import Director
from .state import DirectorState

__all__ = ["Director", "DirectorState"]
