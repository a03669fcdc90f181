"""The functional API of the original py-faas (``pyfaas_exec`` and co).

A thin layer over one module-level :class:`pyfaas.client.client.Client`,
created by :func:`pyfaas_config` or, on first use, from ``$PYFAAS_CONFIG``
or the defaults (127.0.0.1:40000, 20 s). Programs that talk to several
Directors should use ``Client`` objects instead.

Code written for the original runs unchanged: every function also takes
the original's keyword names (``pyfaas_exec(func_id=...,
func_positional_args_list=..., func_default_args_list=...)``,
``pyfaas_config(file_path=...)``, ...) besides today's, and returns what
the original returned where that differs from the Client
(``pyfaas_unregister`` returns 1). docs/api.md lists both names.
"""

import logging
import threading

from .client import Client, default_client
from .workflows import load_workflow

log = logging.getLogger(__name__)

_lock = threading.Lock()
_client = None


def _either(function, name, value, original_name, original):
    """``value``, or the value given under the original's keyword name."""
    if original is None:
        return value
    if value is not None:
        raise TypeError("%s() got both %r and %r (the original's name for "
                        "it): pass one" % (function, name, original_name))
    return original


def pyfaas_config(path=None, *, file_path=None):
    """Configure the module-level client from a client TOML file.

    Without ``path`` (the original's ``file_path``): ``$PYFAAS_CONFIG`` if
    set, else 127.0.0.1:40000 with a 20 s timeout. Closes any previous
    module-level client.

    Returns:
        Client: the new module-level client.

    Raises:
        PyFaaSConfigError: the file is missing or invalid.
    """
    global _client
    path = _either("pyfaas_config", "path", path, "file_path", file_path)
    new = Client.from_config(path) if path else default_client()
    with _lock:
        old, _client = _client, new
    if old is not None:
        old.close()
    return new


def _get():
    """The module-level client, created on first use."""
    global _client
    client = _client  # (one read of a global: no lock on the common path)
    if client is not None:
        return client
    with _lock:
        if _client is None:
            _client = default_client()
        return _client


def pyfaas_register(fn=None, name=None, *, func_code=None, override=True):
    """Deploy ``fn`` (the original's ``func_code``) to every Worker.

    Registering a name again with new code replaces the old version
    (``override=True``, the default). With ``override=False`` a function
    already registered under that name is kept and nothing is sent. A
    bool in second place is ``override``, as in the original's signature.

    Returns:
        str: the function id (with ``override=False``, the kept one's).

    Raises:
        PyFaaSFunctionRegistrationError: see ``Client.register``.
    """
    fn = _either("pyfaas_register", "fn", fn, "func_code", func_code)
    if isinstance(name, bool):  # the original's pyfaas_register(f, True)
        name, override = None, name
    client = _get()
    if not override:
        wanted = name or getattr(fn, "__name__", None)
        for fid, info in client.list().items():
            if info["name"] == wanted:
                log.info("function %r is registered already (id %s); kept "
                         "(override=False)", wanted, fid)
                return fid
    return client.register(fn, name)


def pyfaas_unregister(name_or_id=None, *, func_id=None):
    """Remove a function (by name or id; the original's ``func_id``)
    everywhere.

    Returns:
        int: 1, as the original (``Client.unregister`` returns the id).

    Raises:
        PyFaaSFunctionUnregistrationError: it is not registered.
    """
    _get().unregister(_either("pyfaas_unregister", "name_or_id", name_or_id,
                              "func_id", func_id))
    return 1


def pyfaas_exec(name_or_id=None, args=None, kwargs=None, save_in_cache=False,
                timeout=None, retries=0, *, func_id=None,
                func_positional_args_list=None, func_default_args_list=None):
    """Run a registered function remotely and return its result.

    The original's names ``func_id``, ``func_positional_args_list`` and
    ``func_default_args_list`` stand for ``name_or_id``, ``args`` and
    ``kwargs``. See ``Client.exec``.
    """
    # Calls with today's names pay two or three tests for the original's.
    if name_or_id is None or func_positional_args_list is not None or \
            func_default_args_list is not None:
        name_or_id, args, kwargs = _exec_arguments(
            name_or_id, args, kwargs, func_id, func_positional_args_list,
            func_default_args_list)
    return (_client or _get()).exec(name_or_id, args, kwargs, save_in_cache,
                                    timeout, retries)


def _exec_arguments(name_or_id, args, kwargs, func_id, positional, default):
    name_or_id = _either("pyfaas_exec", "name_or_id", name_or_id, "func_id",
                         func_id)
    if name_or_id is None:
        raise TypeError("pyfaas_exec() missing the function: pass its name "
                        "or id (name_or_id, or the original's func_id)")
    return (name_or_id,
            _either("pyfaas_exec", "args", args, "func_positional_args_list",
                    positional),
            _either("pyfaas_exec", "kwargs", kwargs, "func_default_args_list",
                    default))


def pyfaas_exec_async(name_or_id, args=None, kwargs=None, save_in_cache=False,
                      timeout=None, retries=0):
    """Start a remote call; return a ``concurrent.futures.Future`` (which
    asyncio code can also ``await``)."""
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


def pyfaas_get_worker_info(worker_id=None):
    """Details of one Worker (default: the only live one); see
    ``Client.worker_info``."""
    return _get().worker_info(worker_id)


def pyfaas_get_stats(name_or_id=None, *, func_name=None):
    """Cluster statistics (all functions, or one: ``name_or_id``, the
    original's ``func_name``); see ``Client.get_stats``."""
    return _get().get_stats(_either("pyfaas_get_stats", "name_or_id",
                                    name_or_id, "func_name", func_name))


def pyfaas_get_cache_dump(worker_id=None):
    """One Worker's result cache (default: the only live Worker's) as a
    JSON-ready dict."""
    return _get().cache_dump(worker_id)


def pyfaas_load_workflow(path=None, *, workflow_file_path=None):
    """Read a workflow JSON file (``path``, the original's
    ``workflow_file_path``); return it as a dict.

    Raises:
        PyFaaSWorkflowLoadingError: no path, or the file cannot be read or
            is not a JSON object.
    """
    return load_workflow(_either("pyfaas_load_workflow", "path", path,
                                 "workflow_file_path", workflow_file_path))


def pyfaas_chain_exec(workflow=None, timeout=None, *, json_workflow=None):
    """Run a workflow (dict, JSON string or file; the original's
    ``json_workflow``); see ``Client.chain_exec``."""
    return _get().chain_exec(_either("pyfaas_chain_exec", "workflow",
                                     workflow, "json_workflow",
                                     json_workflow), timeout=timeout)


def pyfaas_ping():
    """Round trip to the Director; returns a summary dict with ``rtt_s``
    (the original returned None).

    Raises:
        PyFaaSPingingError: the Director cannot be reached.
    """
    return _get().ping()


def pyfaas_kill_worker(worker_id=None):
    """Stop a Worker (default: the only live one) gracefully."""
    return _get().kill_worker(worker_id)


def pyfaas_close():
    """Close the module-level client. The next call opens a new one."""
    global _client
    with _lock:
        old, _client = _client, None
    if old is not None:
        old.close()
