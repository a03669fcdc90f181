"""The client library: what a user's program imports.

- :mod:`.client`: :class:`Client`, one connection to one Director.
- :mod:`.channel`: requests and replies over that connection, from many
  threads.
- :mod:`.futures`: call futures and :class:`Executor`.
- :mod:`.workflows`: running workflows from the client.
- :mod:`.api`: the original functional API (``pyfaas_exec`` and co).
"""

from .client import Client, default_client
from .futures import Executor

__all__ = ["Client", "Executor", "default_client"]
