"""The client library: what a user's program imports.

- :mod:`.client`: :class:`Client`, one connection to one Director.
- :mod:`.channel`: requests and replies over that connection, from many
  threads.
- :mod:`.futures`: call futures and ordered ``map``.
- :mod:`.executor`: :class:`Executor`, the standard Executor on a Client.
- :mod:`.workflows`: what a workflow request carries; workflow files.
- :mod:`.api`: the original functional API (``pyfaas_exec`` and co).

Imports go one way: api and executor -> client -> futures -> channel ->
:mod:`pyfaas.net`; client -> workflows.
"""

from .client import Client, default_client
from .executor import Executor

__all__ = ["Client", "Executor", "default_client"]
