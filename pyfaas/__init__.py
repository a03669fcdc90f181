"""PyFaaS: push Python functions to a few machines and call them like local ones.

A Director routes requests from clients to Workers; Workers run functions in
a thread pool. README.md has the quick start, docs/ the reference.
"""

from .client.api import (pyfaas_chain_exec, pyfaas_close, pyfaas_config,
                         pyfaas_exec, pyfaas_exec_async, pyfaas_map,
                  pyfaas_load_workflow,
                  pyfaas_get_cache_dump, pyfaas_get_stats,
                  pyfaas_get_worker_ids, pyfaas_get_worker_info,
                  pyfaas_kill_worker, pyfaas_list, pyfaas_ping,
                  pyfaas_register, pyfaas_unregister)
from .client import Client, Executor
from .errors import *  # noqa: F401,F403 - the exception classes are public API
from .errors import __all__ as _errors_all
from .version import __version__

__all__ = [
    "Client", "Executor", "pyfaas_close", "pyfaas_exec_async", "pyfaas_map", "pyfaas_config", "pyfaas_exec",
    "pyfaas_get_cache_dump", "pyfaas_get_stats", "pyfaas_chain_exec",
    "pyfaas_load_workflow",
    "pyfaas_get_worker_ids", "pyfaas_get_worker_info", "pyfaas_kill_worker",
    "pyfaas_list", "pyfaas_ping", "pyfaas_register", "pyfaas_unregister",
] + _errors_all
