"""The functional API of the original PyFaaS docs (``pyfaas_exec`` and co).

A thin layer over one module-level :class:`pyfaas.client.client.Client`, created by
:func:`pyfaas_config` or, on first use, from ``$PYFAAS_CONFIG`` or the
defaults (127.0.0.1:40000, 20 s). Programs that talk to several Directors
should use ``Client`` objects instead.
"""

import threading

from .client import Client, default_client
from .workflows import load_workflow

_lock = threading.Lock()
_client = None


def pyfaas_config(path=None):
    """Configure the module-level client from a client TOML file.

    Without ``path``: ``$PYFAAS_CONFIG`` if set, else 127.0.0.1:40000 with a
    20 s timeout. Closes any previous module-level client.

    Returns:
        Client: the new module-level client.

    Raises:
        PyFaaSConfigError: the file is missing or invalid.
    """
    global _client
    new = Client.from_config(path) if path else default_client()
    with _lock:
        old, _client = _client, new
    if old is not None:
        old.close()
    return new


def _get():
    global _client
    with _lock:
        if _client is None:
            _client = default_client()
        return _client


def pyfaas_register(fn, name=None):
    """Deploy ``fn`` to every Worker; return its function id."""
    return _get().register(fn, name)


def pyfaas_unregister(name_or_id):
    """Remove a function everywhere; return its id."""
    return _get().unregister(name_or_id)


def pyfaas_exec(name_or_id, args=None, kwargs=None, save_in_cache=False,
                timeout=None, retries=0):
    """Run a registered function remotely and return its result."""
    return _get().exec(name_or_id, args, kwargs, save_in_cache=save_in_cache,
                       timeout=timeout, retries=retries)


def pyfaas_exec_async(name_or_id, args=None, kwargs=None, save_in_cache=False,
                      timeout=None, retries=0):
    """Start a remote call; return a ``concurrent.futures.Future``."""
    return _get().exec_async(name_or_id, args, kwargs,
                             save_in_cache=save_in_cache, timeout=timeout,
                             retries=retries)


def pyfaas_map(name_or_id, *iterables, timeout=None):
    """Call ``name_or_id`` on each item; yield the results in order (lazily)."""
    return _get().map(name_or_id, *iterables, timeout=timeout)


def pyfaas_list():
    """``{func_id: {"name": ..., "signature": ..., ...}}`` of registered functions."""
    return _get().list()


def pyfaas_get_worker_ids():
    """Ids of the live Workers."""
    return _get().worker_ids()


def pyfaas_get_worker_info(worker_id):
    """Details of one Worker (identity, system, config, functions, network)."""
    return _get().worker_info(worker_id)


def pyfaas_get_stats(name_or_id=None):
    """Cluster statistics (all functions, or one); see ``Client.get_stats``."""
    return _get().get_stats(name_or_id)


def pyfaas_get_cache_dump(worker_id):
    """One Worker's result cache as a JSON-ready dict."""
    return _get().cache_dump(worker_id)


def pyfaas_load_workflow(path):
    """Read a workflow JSON file; return it as a dict.

    Raises:
        PyFaaSWorkflowValidationError: the file cannot be read or is not JSON.
    """
    return load_workflow(path)


def pyfaas_chain_exec(workflow, timeout=None):
    """Run a workflow (dict or JSON string); see ``Client.chain_exec``."""
    return _get().chain_exec(workflow, timeout=timeout)


def pyfaas_ping():
    """Round trip to the Director; returns a summary dict with ``rtt_s``."""
    return _get().ping()


def pyfaas_kill_worker(worker_id):
    """Stop a Worker gracefully."""
    return _get().kill_worker(worker_id)


def pyfaas_close():
    """Close the module-level client. The next call opens a new one."""
    global _client
    with _lock:
        old, _client = _client, None
    if old is not None:
        old.close()
