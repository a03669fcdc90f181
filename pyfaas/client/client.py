"""The client library: :class:`Client`, one connection to one Director.

Owns what a program asks of the cluster: registering and listing functions,
calls (their arguments checked against the function's signature before
anything is sent, and encoded in one place, ``_call_parts``), workflows,
the cluster queries, and the translation of error replies into typed
exceptions. The connection, the requests in flight on it and who reads it
belong to :class:`~pyfaas.client.channel.Channel`; futures and ``map`` to
:mod:`pyfaas.client.futures`; what a workflow request carries to
:mod:`pyfaas.client.workflows`. :mod:`pyfaas.client.executor` builds the
standard Executor on this class's public methods.
"""

import logging
import os
import time

from .. import serialization as ser
from ..config import (DEFAULT_MAX_FRAME_BYTES, ClientConfig,
                      load_client_config)
from ..errors import (PyFaaSCacheDumpingError, PyFaaSChainedExecutionError,
                      PyFaaSConfigError, PyFaaSError,
                      PyFaaSFunctionListingError,
                      PyFaaSFunctionRegistrationError,
                      PyFaaSFunctionUnregistrationError, PyFaaSNetworkError,
                      PyFaaSPingingError, PyFaaSStatisticsRetrievalError,
                      PyFaaSTimeoutError, PyFaaSWorkerIDsRetrievalError,
                      PyFaaSWorkerInfoError, PyFaaSWorkerKillError,
                      error_from_meta)
from ..logs import setup_client_logging
from ..net.tls import client_context as tls_client_context
from ..security import MIN_TOKEN_LENGTH, load_token
from ..wire import protocol as p
from .channel import Channel
from .futures import call_result, ordered_results, send_calls
from .signatures import (Signatures, call_options, checked_arguments,
                         deploy_meta)
from .workflows import workflow_outputs, workflow_request

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 40000
DEFAULT_TIMEOUT_S = 20.0
EXEC_TIMEOUT_GRACE_S = 0.25


class Client:
    """A connection to one PyFaaS Director. Thread-safe; a context manager.

    Args:
        host: the Director's address (default 127.0.0.1).
        port: the Director's port (default 40000).
        timeout: seconds to wait for each answer (``receive_timeout_s``).
        max_frame_size: the largest frame accepted from the Director.
        config_path: the file the settings came from, named in messages.
        token: the cluster token (str or bytes); default ``$PYFAAS_TOKEN``.
        tls: connect with TLS; ``tls_ca_file`` verifies the Director's
            certificate (default: the system's CAs).
        config: a :class:`~pyfaas.config.ClientConfig` to take all of
            these from instead (``token`` still applies).
    """

    def __init__(self, host=DEFAULT_HOST, port=DEFAULT_PORT,
                 timeout=DEFAULT_TIMEOUT_S,
                 max_frame_size=DEFAULT_MAX_FRAME_BYTES, config_path=None,
                 token=None, tls=False, tls_ca_file="", *, config=None):
        if config is None:
            config = ClientConfig(
                path=config_path or "the client config",
                director_ip_addr=host, director_port=port,
                receive_timeout_s=float(timeout),
                max_frame_bytes=max_frame_size, log_level="", tls=tls,
                tls_ca_file=tls_ca_file)
        self.config = config
        self.host = config.director_ip_addr
        self.port = config.director_port
        self.timeout = config.receive_timeout_s
        self.max_frame_size = config.max_frame_bytes
        if token is None:
            token = load_token()
        elif isinstance(token, str):
            token = token.encode("utf-8")
        if token is not None and len(token) < MIN_TOKEN_LENGTH:
            raise PyFaaSConfigError(
                "the cluster token must have at least %d characters (the "
                "Director and Workers refuse shorter ones)" % MIN_TOKEN_LENGTH)
        self._channel = Channel(config, token, tls_client_context(config))
        self._signatures = Signatures(self.list)

    @classmethod
    def from_config(cls, path):
        """A Client from a client TOML file (docs/configuration.md).

        Also applies the file's ``[misc] log_level`` to the client's stdout
        logging (``""``: no handler of its own).

        Raises:
            PyFaaSConfigError: the file is missing or invalid.
        """
        cfg = load_client_config(path)
        setup_client_logging(cfg.log_level)
        return cls(token=load_token(cfg.token_file, cfg.path), config=cfg)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __repr__(self):
        return "<pyfaas.Client %s:%s>" % (self.host, self.port)

    def close(self):
        """Close the connection; pending calls fail. Idempotent."""
        self._channel.close()

    # ----- request plumbing ------------------------------------------------------

    def _request(self, type_, meta=None, payload=b"", flags=0, timeout=None,
                 error_class=PyFaaSError):
        frame = self._channel.request(type_, meta, payload, flags, timeout)
        if frame.type == p.ERROR:
            raise error_from_meta(frame.meta(), error_class)
        return frame

    # ----- functions ---------------------------------------------------------

    def register(self, fn, name=None, idempotent=False):
        """Deploy ``fn`` to every Worker under ``name`` (default ``fn.__name__``).

        Registering a name again with new code replaces the old version
        everywhere (logged at INFO level). ``idempotent=True`` declares the
        function safe to run twice: a call whose Worker is lost is then run
        again on another Worker (as with ``retries``) instead of failing.

        Returns:
            str: the function id.

        Raises:
            PyFaaSFunctionRegistrationError: no Worker could load it, or bad name.
            PyFaaSSerializationError: ``fn`` cannot be pickled.
        """
        return self.register_info(fn, name, idempotent)["func_id"]

    def register_info(self, fn, name=None, idempotent=False):
        """Like :meth:`register`, returning the Director's full answer.

        Returns:
            dict: ``func_id``, ``name``, ``replaced`` (old id or None),
            ``workers`` (ids that loaded it), ``failed`` ({worker id: why}).
        """
        if not callable(fn):
            raise PyFaaSFunctionRegistrationError(
                "cannot register %r: it is not callable" % (fn,))
        name = name or getattr(fn, "__name__", None)
        if not isinstance(name, str) or not name or name == "<lambda>":
            raise PyFaaSFunctionRegistrationError(
                "cannot register %r without a name: pass register(fn, "
                "name='...')" % (fn,))
        return self._deploy(name, ser.dumps_function(fn),
                            ser.describe_signature(fn),
                            getattr(fn, "__doc__", None), idempotent,
                            ser.source_info(fn))

    def _deploy(self, name, code, params, doc=None, idempotent=False,
                source=None):
        meta = deploy_meta(name, params, doc, idempotent, source)
        frame = self._request(p.DEPLOY, meta, code,
                              error_class=PyFaaSFunctionRegistrationError)
        answer = frame.meta()
        self._signatures.registered(name, answer, params)
        if answer.get("replaced"):
            log.info("function %r replaced: id %s -> %s", name,
                     answer["replaced"], answer["func_id"])
        for wid, why in (answer.get("failed") or {}).items():
            log.warning("worker %s could not load %r: %s", wid, name, why)
        return answer

    def unregister(self, name_or_id):
        """Remove a function from the Director and every Worker.

        Returns:
            str: the id of the removed function.

        Raises:
            PyFaaSFunctionUnregistrationError: it is not registered.
        """
        frame = self._request(p.UNDEPLOY, {"f": name_or_id},
                              error_class=PyFaaSFunctionUnregistrationError)
        answer = frame.meta()
        self._signatures.unregistered(answer)
        return answer["func_id"]

    def list(self):
        """The registered functions.

        Returns:
            dict: ``{func_id: {"name", "signature", "params", "doc",
            "registered_at", "workers"}}``.
        """
        frame = self._request(p.LIST, error_class=PyFaaSFunctionListingError)
        listing = ser.from_json(frame.payload)
        self._signatures.learn(listing)
        for info in listing.values():
            params = info.get("params")
            info["signature"] = (ser.signature_text(params)
                                 if params is not None else None)
        return listing

    def _call_parts(self, name, args, kwargs, options):
        """Check and encode one call: ``(type, meta, payload, flags)``."""
        # Whether arguments bind depends only on their count and keyword
        # names: a shape that fitted is kept with its call's meta.
        shape = (name, len(args), tuple(kwargs) if kwargs else ())
        meta = self._signatures.fitting.get(shape)
        if meta is None:
            meta = self._signatures.check(name, args, kwargs, shape)
        if options:
            meta = {"f": name}
            meta.update(options)
        payload = ser.dumps((tuple(args), dict(kwargs)), "arguments")
        return p.CALL, meta, payload, p.FLAG_PICKLED

    def exec_async(self, name_or_id, args=None, kwargs=None, save_in_cache=False,
                   timeout=None, retries=0):
        """Start a call; return a :class:`concurrent.futures.Future`.

        ``future.result(timeout)`` returns the result or raises what
        :meth:`exec` would; ``future.cancel()`` cancels a call that has not
        started. ``timeout`` limits the run on the Worker; ``retries`` as in
        :meth:`exec`. Raises PyFaaSParameterMismatchError at once for bad
        arguments.
        """
        request = self._call_parts(name_or_id, *checked_arguments(args, kwargs),
                                   call_options(save_in_cache, timeout,
                                                 retries))
        return send_calls(self._channel, [request])[0]

    def submit(self, name, /, *args, **kwargs):
        """``exec_async`` with Python's calling syntax; returns a Future."""
        return self.exec_async(name, args, kwargs)

    def exec(self, name_or_id, args=None, kwargs=None, save_in_cache=False,
             timeout=None, retries=0):
        """Run a registered function on a Worker and return its result.

        Args:
            name_or_id: function name or id.
            args: positional arguments (list or tuple).
            kwargs: keyword arguments (dict).
            save_in_cache: ask the Worker to cache the result.
            timeout: seconds to wait (default: ``receive_timeout_s``); when
                given, it also limits the run on the Worker, which answers
                PyFaaSTimeoutError when it passes.
            retries: if the Worker running the call is lost, run it again
                on another Worker up to this many times (only for functions
                safe to run twice; see ``register(idempotent=True)``).

        Raises:
            PyFaaSParameterMismatchError: the arguments do not fit (not sent).
            PyFaaSFunctionNotRegisteredError: no such function.
            PyFaaSFunctionExecutionError: the function raised; carries the
                remote type, message and traceback.
            PyFaaSNoWorkersError, PyFaaSWorkerLostError, PyFaaSTimeoutError,
            PyFaaSNetworkError: the call could not complete.
        """
        args, kwargs = checked_arguments(args, kwargs)
        options = call_options(save_in_cache, timeout, retries) if (
            save_in_cache or timeout is not None or retries) else None
        return self._exec(name_or_id, args, kwargs, options, timeout)

    def call(self, name, /, *args, **kwargs):
        """``exec`` with Python's own calling syntax: ``call("add", 1, b=2)``."""
        return self._exec(name, args, kwargs, None, None)

    def _exec(self, name_or_id, args, kwargs, options, timeout):
        type_, meta, payload, flags = self._call_parts(name_or_id, args,
                                                       kwargs, options)
        # With a timeout the Worker enforces it too; give its (more precise)
        # answer a moment to arrive before answering for it here.
        wait = None if timeout is None else timeout + EXEC_TIMEOUT_GRACE_S
        return call_result(self._channel.request(type_, meta, payload, flags,
                                                 wait))

    async def aexec(self, name_or_id, args=None, kwargs=None,
                    save_in_cache=False, timeout=None, retries=0):
        """:meth:`exec` for asyncio code, never blocking the event loop (see
        :mod:`pyfaas.client.aio`); cancelling the task cancels the call."""
        from .aio import await_call
        wait = self.timeout if timeout is None else \
            timeout + EXEC_TIMEOUT_GRACE_S
        return await await_call(lambda: self.exec_async(
            name_or_id, args, kwargs, save_in_cache, timeout, retries),
            wait, "director " + self._channel.name)

    async def acall(self, name, /, *args, **kwargs):
        """:meth:`call` for asyncio code, as :meth:`aexec`."""
        return await self.aexec(name, args, kwargs)

    def map(self, name_or_id, *iterables, timeout=None, max_in_flight=256,
            batch=64):
        """Call ``name_or_id`` on each item (zipped like ``map``); yield results in order.

        Lazy: at most ``max_in_flight`` calls are outstanding, and new calls
        go out ``batch`` at a time, in one CALL_MANY frame. ``timeout`` bounds the whole
        iteration. The first failing call raises its error when its turn
        comes; calls not consumed are cancelled.
        """
        return ordered_results(
            self._channel,
            lambda args: self._call_parts(name_or_id, args, {}, {}),
            zip(*iterables), timeout=timeout, max_in_flight=max_in_flight,
            batch=batch)

    # ----- workflows -----------------------------------------------------------

    def chain_exec(self, workflow, timeout=None, validate=True):
        """Run a workflow and return its output.

        ``workflow`` is a dict, a JSON string, or the path of a JSON file
        (a ``pathlib.Path``, or a str naming an existing file).

        Returns:
            the final step's output, or ``{step: output}`` when the workflow
            has several final steps.

        Raises:
            PyFaaSWorkflowValidationError: the workflow is malformed; its
                ``problems`` lists every problem (checked here, and again by
                the Director).
            PyFaaSChainedExecutionError: a step failed (``step``,
                ``workflow_id``, ``cause``, remote type and traceback).
            PyFaaSTimeoutError: the whole workflow took longer than
                ``timeout`` (default ``receive_timeout_s``); it is cancelled.
        """
        wf_id, payload = workflow_request(workflow,
                                          self.list if validate else None)
        try:
            frame = self._request(p.CHAIN, None, payload, timeout=timeout,
                                  error_class=PyFaaSChainedExecutionError)
        except PyFaaSTimeoutError as exc:
            raise PyFaaSTimeoutError("workflow %r did not finish in time (it "
                                     "was cancelled): %s" % (wf_id, exc))
        return workflow_outputs(frame)

    # ----- workers and cluster -------------------------------------------------

    def workers(self):
        """The live Workers as the Director sees them (list of dicts)."""
        return ser.from_json(self._request(
            p.WORKERS, error_class=PyFaaSWorkerIDsRetrievalError).payload)

    def worker_ids(self):
        """Ids of the live Workers."""
        return [w["worker_id"] for w in self.workers()]

    def _the_worker(self, worker_id, error_class, method):
        """``worker_id``, or when it is None the id of the only live Worker."""
        ids = [worker_id] if worker_id is not None else self.worker_ids()
        if len(ids) != 1:
            raise error_class(
                "%s() without a worker_id needs exactly one live Worker; %s"
                % (method, "%d are live: %s (pass one of these ids)" % (
                    len(ids), ", ".join(ids)) if ids else "none is live"))
        return ids[0]

    def worker_info(self, worker_id=None):
        """Details of one Worker (default: the only live one): identity,
        system, config, functions, network.

        Raises:
            PyFaaSWorkerInfoError: no live Worker has this id; without an
                id, not exactly one is live (the message lists their ids).
        """
        worker_id = self._the_worker(worker_id, PyFaaSWorkerInfoError,
                                     "worker_info")
        frame = self._request(p.WORKER_INFO, {"worker_id": worker_id},
                              error_class=PyFaaSWorkerInfoError)
        return ser.from_json(frame.payload)

    def kill_worker(self, worker_id=None):
        """Stop a Worker (default: the only live one) gracefully: it
        finishes running calls first.

        Raises:
            PyFaaSWorkerKillError: as PyFaaSWorkerInfoError in worker_info.
        """
        worker_id = self._the_worker(worker_id, PyFaaSWorkerKillError,
                                     "kill_worker")
        try:
            self._request(p.KILL_WORKER, {"worker_id": worker_id},
                          error_class=PyFaaSWorkerKillError)
        except PyFaaSWorkerInfoError as exc:
            raise PyFaaSWorkerKillError(str(exc))

    def get_stats(self, name_or_id=None):
        """Cluster statistics, optionally for one function.

        Returns:
            dict: ``functions`` ({func_id: figures summed over Workers:
            calls, errors, cache_hits, cache_misses, cache_hit_rate,
            executions, total_s, mean_s, min_s, max_s, p50_s, p95_s,
            last_call, workers}), ``per_worker`` ({worker_id: {func_id:
            figures}}), ``workers_disabled``, ``workers_failed`` and
            ``director`` (requests routed, errors, queue depth, per Worker).

        Raises:
            PyFaaSStatisticsRetrievalError: statistics are disabled, or the
                function is not registered.
        """
        frame = self._request(p.STATS, {"f": name_or_id},
                              error_class=PyFaaSStatisticsRetrievalError)
        return ser.from_json(frame.payload)

    def cache_dump(self, worker_id=None):
        """A Worker's result cache (default: the only live Worker's),
        entries least recently used first.

        Returns:
            dict: ``policy``, ``max_size``, ``size``, ``worker_id`` and
            ``entries`` (function, func_id, key, args and result reprs,
            size_bytes, hits, created, last_use).

        Raises:
            PyFaaSCacheDumpingError: as PyFaaSWorkerInfoError in worker_info.
        """
        worker_id = self._the_worker(worker_id, PyFaaSCacheDumpingError,
                                     "cache_dump")
        frame = self._request(p.CACHE_DUMP, {"worker_id": worker_id},
                              error_class=PyFaaSCacheDumpingError)
        return ser.from_json(frame.payload)

    def ping(self):
        """Round trip to the Director.

        Returns:
            dict: ``director``, ``protocol``, ``workers``, ``functions``,
            ``uptime_s`` and ``rtt_s`` (this round trip, in seconds).

        Raises:
            PyFaaSPingingError (a PyFaaSNetworkError): the Director cannot
                be reached, the connection broke, or it answered an error.
        """
        start = time.perf_counter()
        try:
            meta = self._request(p.PING,
                                 error_class=PyFaaSPingingError).meta()
        except PyFaaSNetworkError as exc:
            if type(exc) is not PyFaaSNetworkError:
                raise
            raise PyFaaSPingingError(str(exc)) from exc
        meta["rtt_s"] = time.perf_counter() - start
        return meta

    def status(self):
        """The Director's status document: its Workers, functions, calls
        and recent events, as ``python -m pyfaas status --json`` prints it
        and the monitoring endpoint serves it (``/api/status``); its
        fields are in docs/monitoring.md."""
        return ser.from_json(self._request(p.STATUS).payload)

    def wait_for_workers(self, count=1, timeout=10.0):
        """Block until at least ``count`` Workers are live; return their ids.

        Raises:
            PyFaaSTimeoutError: fewer Workers after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            ids = self.worker_ids()
            if len(ids) >= count:
                return ids
            if time.monotonic() >= deadline:
                raise PyFaaSTimeoutError(
                    "%d worker(s) live after %.1f s; %d wanted"
                    % (len(ids), timeout, count))
            time.sleep(0.02)


def default_client():
    """A Client from ``$PYFAAS_CONFIG`` if set, else 127.0.0.1:40000, 20 s."""
    path = os.environ.get("PYFAAS_CONFIG")
    if path:
        return Client.from_config(path)
    return Client()
