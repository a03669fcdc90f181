"""Plain callables run on a PyFaaS cluster, as a ``concurrent.futures.Executor``.

Owns :class:`Executor`, built on the public :class:`~pyfaas.client.client.Client`
API alone: a callable is registered (``register``) under a name derived from
its code the first time it is used, called with ``exec_async`` and ``map``,
and unregistered (``unregister``) at shutdown when the Executor made its own
client. It imports the Client; nothing in the Client imports it.
"""

import logging
import threading
import weakref
from concurrent import futures as cf

from .. import serialization as ser
from ..errors import PyFaaSError
from ..ids import function_id
from .client import Client, default_client

log = logging.getLogger(__name__)


class Executor(cf.Executor):
    """Run plain callables on a PyFaaS cluster, as a standard Executor.

    A callable is registered the first time it is submitted, under a name
    made of its qualified name and a digest of its code; later submissions
    send only its id and the arguments. Callables are identified by their
    code: a bound method or a lambda re-created in a loop is pickled again
    (locally) but never re-sent.

    Args:
        director: ``"host:port"`` or ``(host, port)`` of the Director.
        config: a client TOML file (instead of ``director``).
        timeout: seconds for registration round trips (results wait as long
            as the caller asks).
        client: an existing :class:`pyfaas.Client` to use (not closed here).
    """

    def __init__(self, director=None, config=None, timeout=20.0, client=None):
        self._owns_client = client is None
        if client is not None:
            self._client = client
        elif config is not None:
            self._client = Client.from_config(config)
        elif director is not None:
            host, port = (director.rsplit(":", 1) if isinstance(director, str)
                          else director)
            self._client = Client(host, int(port), timeout)
        else:
            self._client = default_client()
        self._ids = weakref.WeakKeyDictionary()
        self._strong_ids = {}
        self._by_digest = {}      # code digest -> func_id: never re-sent
        self._lock = threading.Lock()
        self._outstanding = set()
        self._shutdown = False
        self._close_when_idle = False

    @property
    def client(self):
        return self._client

    def _func_id(self, fn):
        try:
            known = self._ids.get(fn)
        except TypeError:
            known = self._strong_ids.get(id(fn), (None, None))[1]
        if known is not None:
            return known
        digest = function_id(ser.dumps_function(fn))
        fid = self._by_digest.get(digest)
        if fid is None:  # new code: register it once
            name = "%s.%s#%s" % (getattr(fn, "__module__", None) or "?",
                                 getattr(fn, "__qualname__", None) or
                                 type(fn).__name__, digest[:8])
            fid = self._by_digest[digest] = self._client.register(fn, name)
        try:
            self._ids[fn] = fid
        except TypeError:  # not weak-referenceable: keep it alive
            self._strong_ids[id(fn)] = (fn, fid)
        return fid

    def _check_open(self):
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")

    def submit(self, fn, /, *args, **kwargs):
        """Run ``fn(*args, **kwargs)`` on the cluster; return a Future."""
        with self._lock:
            self._check_open()
        fut = self._client.exec_async(self._func_id(fn), args, kwargs)
        with self._lock:
            self._outstanding.add(fut)
        fut.add_done_callback(self._done)
        return fut

    def _done(self, fut):
        with self._lock:
            self._outstanding.discard(fut)
            close = self._close_when_idle and not self._outstanding
        if close and self._owns_client:
            self._client.close()

    def map(self, fn, *iterables, timeout=None, chunksize=1):
        """Like ``Executor.map``: results in order; lazy, bounded in flight.

        Calls go out as results are asked for, ``chunksize * 64`` (at most
        256) to a frame.

        Raises:
            PyFaaSTimeoutError (a TimeoutError): a result is not ready
                within ``timeout`` seconds of the first one asked for (as
                :meth:`pyfaas.Client.map`).
        """
        with self._lock:
            self._check_open()
        return self._client.map(self._func_id(fn), *iterables,
                                timeout=timeout,
                                batch=max(1, min(chunksize * 64, 256)))

    def shutdown(self, wait=True, *, cancel_futures=False):
        """No new submissions; optionally cancel or wait for pending ones.

        With ``wait=True`` and a connection of its own (not ``client=``), the
        functions this Executor registered are unregistered before it
        closes, so they do not stay on the cluster.

        Raises:
            PyFaaSError: ``wait=True`` on the thread that completes the
                pending futures (in a done-callback), which would wait for
                itself; nothing was done.
        """
        if wait:
            with self._lock:
                pending = list(self._outstanding)
            for fut in pending:
                fut.refuse_waiting_here()
        with self._lock:
            self._shutdown = True
            pending = list(self._outstanding)
        if cancel_futures:
            for fut in pending:
                fut.cancel()
        if wait:
            cf.wait(pending)
            if self._owns_client:
                for fid in set(self._by_digest.values()):
                    try:
                        self._client.unregister(fid)
                    except PyFaaSError as exc:
                        log.info("could not unregister %s: %s", fid, exc)
                self._client.close()
            return
        with self._lock:
            self._close_when_idle = True
            idle = not self._outstanding
        if idle and self._owns_client:
            self._client.close()
