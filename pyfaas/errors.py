"""The PyFaaS exception hierarchy.

Owns every exception a PyFaaS user can catch, and the mapping between the
error codes that travel in ERROR frames and these classes. It does not raise
anything itself and imports nothing from the rest of the package.

One root, :class:`PyFaaSError`. Subclasses say what went wrong. Every name
of the original py-faas is kept (``PyFaaSFunctionRegistrationError`` and
friends, importable from :mod:`pyfaas.exceptions` as there) because code
written for it catches them; each sits under the class of what it means
here, so such an ``except`` clause catches what it meant, and code written
for PyFaaS catching the broader class catches it too.
"""

from concurrent.futures import TimeoutError as _FuturesTimeout


def _with_remote_traceback(self):
    """``str()`` of errors that carry a remote traceback: message, then it."""
    text = Exception.__str__(self)
    if self.remote_traceback:
        text += "\n--- remote traceback ---\n" + self.remote_traceback.rstrip()
    return text


class PyFaaSError(Exception):
    """Root of every error PyFaaS raises."""


class PyFaaSConfigError(PyFaaSError):
    """A configuration file is missing, unreadable or holds a bad value."""


class PyFaaSNetworkError(PyFaaSError, ConnectionError):
    """The Director could not be reached, or the connection to it broke."""


# Before Python 3.11 concurrent.futures has its own TimeoutError; a PyFaaS
# timeout is both, so ``except TimeoutError`` and the futures idiom work.
_TIMEOUT_BASES = ((TimeoutError,) if _FuturesTimeout is TimeoutError
                  else (TimeoutError, _FuturesTimeout))


class PyFaaSTimeoutError(PyFaaSError, *_TIMEOUT_BASES):
    """No answer arrived before the deadline."""


class PyFaaSPingingError(PyFaaSNetworkError):
    """A ping got no answer from the Director: it could not be reached, the
    connection broke, or it answered with an error (the original's name)."""


class PyFaaSProtocolError(PyFaaSError):
    """A peer sent bytes that are not valid PyFaaS frames."""


class PyFaaSFrameTooLargeError(PyFaaSProtocolError):
    """A frame announced a length over the configured maximum."""


class PyFaaSVersionError(PyFaaSProtocolError):
    """The peer speaks another protocol version."""


class PyFaaSAuthenticationError(PyFaaSError):
    """The handshake's authentication step failed."""


class PyFaaSTokenMissingError(PyFaaSAuthenticationError):
    """The Director requires a cluster token and none is configured here."""


class PyFaaSTokenRejectedError(PyFaaSAuthenticationError):
    """The Director refused our cluster token (it does not match)."""


class PyFaaSNoWorkersError(PyFaaSError):
    """No live Worker can serve the request."""


class PyFaaSWorkerLostError(PyFaaSError):
    """The Worker running a request died, was evicted or disconnected.

    Attributes:
        worker_id: the Worker that was lost.
        cause: how it ended when known (``"SIGSEGV"``, ``"SIGKILL"``,
            ``"exit code 1"``: its supervisor said so), else None.
    """

    def __init__(self, message, worker_id=None, cause=None):
        super().__init__(message)
        self.worker_id = worker_id
        self.cause = cause


class PyFaaSPoisonCallError(PyFaaSWorkerLostError):
    """A call killed ``max_call_crashes`` Workers; it is not sent again.

    Attributes:
        deaths: ``[(worker_id, cause), ...]``, one per Worker that died
            running it, in order (cause None when it is not known).
        worker_id, cause: those of the last death.
    """

    def __init__(self, message, worker_id=None, cause=None, deaths=()):
        super().__init__(message, worker_id, cause)
        self.deaths = [tuple(d) for d in deaths
                       if isinstance(d, (list, tuple))]


class PyFaaSOverloadedError(PyFaaSError):
    """The cluster refused a new request because its queues are full."""


class PyFaaSShuttingDownError(PyFaaSError):
    """The Director is stopping and takes no new calls."""


class PyFaaSSerializationError(PyFaaSError):
    """A function, its arguments or its result could not be (de)serialized."""


class PyFaaSDeserializationError(PyFaaSSerializationError):
    """A result (of a call or a workflow) arrived but cannot be unpickled
    here (the original's name)."""


class PyFaaSFunctionRegistrationError(PyFaaSError):
    """Registering (deploying) a function failed."""


class PyFaaSFunctionUnregistrationError(PyFaaSError):
    """Unregistering a function failed (for example: it is not registered)."""


class PyFaaSFunctionNotRegisteredError(PyFaaSError, LookupError):
    """A call named a function that is not registered."""


class PyFaaSParameterMismatchError(PyFaaSError, TypeError):
    """The arguments of a call do not fit the function's signature."""


class PyFaaSFunctionExecutionError(PyFaaSError):
    """The remote function raised an exception.

    Attributes:
        remote_type: name of the exception type raised on the Worker.
        remote_message: ``str()`` of that exception.
        remote_traceback: the formatted traceback text from the Worker.
        worker_id: the Worker that ran the call, when known.
    """

    def __init__(self, message, remote_type="", remote_message="",
                 remote_traceback="", worker_id=None):
        super().__init__(message)
        self.remote_type = remote_type
        self.remote_message = remote_message
        self.remote_traceback = remote_traceback
        self.worker_id = worker_id

    __str__ = _with_remote_traceback


class PyFaaSFunctionCrashedError(PyFaaSFunctionExecutionError):
    """With process isolation: the call's process died (signal, exit code,
    memory or CPU limit). The Worker replaced it and lives on."""


class PyFaaSFunctionListingError(PyFaaSError):
    """Listing the registered functions failed."""


class PyFaaSFunctionSetRegistrationCheckError(PyFaaSFunctionListingError):
    """The check that a workflow's functions are registered could not be
    made: the listing it reads failed (the original's name)."""


class PyFaaSWorkerIDsRetrievalError(PyFaaSError):
    """The Director answered the request for its Workers' ids with an
    error (the original's name)."""


class PyFaaSWorkerInfoError(PyFaaSError):
    """Worker information could not be retrieved (for example: unknown id)."""


class PyFaaSWorkerKillError(PyFaaSError):
    """A Worker could not be stopped (for example: unknown id)."""


class PyFaaSStatisticsRetrievalError(PyFaaSError):
    """Statistics could not be retrieved (for example: they are disabled)."""


class PyFaaSCacheDumpingError(PyFaaSError):
    """A Worker's cache could not be dumped (for example: unknown id)."""


class PyFaaSWorkflowValidationError(PyFaaSError):
    """A workflow is malformed. ``problems`` lists every problem found."""

    def __init__(self, message, problems=()):
        super().__init__(message)
        self.problems = list(problems)


class PyFaaSWorkflowLoadingError(PyFaaSWorkflowValidationError):
    """A workflow file could not be loaded: no path given, the file cannot
    be read, or it is not JSON (the original's name). ``problems`` says
    which."""


class PyFaaSChainedExecutionError(PyFaaSError):
    """A workflow step failed while the workflow ran.

    Attributes:
        workflow_id, step: which workflow and which step failed.
        cause: the error code of the step's failure ("execution" when the
            function raised, "worker_lost", "no_workers", ...).
        remote_type, remote_message, remote_traceback: the exception raised
            by the step's function, when it raised.
        worker_id: the Worker the step ran on, when known.
    """

    def __init__(self, message, workflow_id="", step="", cause="",
                 remote_type="", remote_message="", remote_traceback="",
                 worker_id=None):
        super().__init__(message)
        self.workflow_id = workflow_id
        self.step = step
        self.cause = cause
        self.remote_type = remote_type
        self.remote_message = remote_message
        self.remote_traceback = remote_traceback
        self.worker_id = worker_id

    __str__ = _with_remote_traceback


__all__ = [name for name in list(globals()) if name.startswith("PyFaaS")]

# Error codes carried in the ``code`` field of ERROR frames. The Director and
# Workers only ever send these strings; clients map them back to classes.
CODES = {
    "protocol": PyFaaSProtocolError,
    "version": PyFaaSVersionError,
    "tls_required": PyFaaSProtocolError,
    "frame_too_large": PyFaaSFrameTooLargeError,
    "auth": PyFaaSAuthenticationError,
    "auth_rejected": PyFaaSTokenRejectedError,
    "no_workers": PyFaaSNoWorkersError,
    "worker_lost": PyFaaSWorkerLostError,
    "poison_call": PyFaaSPoisonCallError,
    "overloaded": PyFaaSOverloadedError,
    "shutting_down": PyFaaSShuttingDownError,
    "serialization": PyFaaSSerializationError,
    "timeout": PyFaaSTimeoutError,
    "not_registered": PyFaaSFunctionNotRegisteredError,
    "parameter_mismatch": PyFaaSParameterMismatchError,
    "execution": PyFaaSFunctionExecutionError,
    "crashed": PyFaaSFunctionCrashedError,
    "registration": PyFaaSFunctionRegistrationError,
    "unregistration": PyFaaSFunctionUnregistrationError,
    "unknown_worker": PyFaaSWorkerInfoError,
    "statistics": PyFaaSStatisticsRetrievalError,
    "cache_dump": PyFaaSCacheDumpingError,
    "workflow_validation": PyFaaSWorkflowValidationError,
    "chained_execution": PyFaaSChainedExecutionError,
    "bad_request": PyFaaSError,
}


def error_from_meta(meta, default=PyFaaSError):
    """The exception an ERROR frame's meta describes (its ``code`` picks the
    class; ``default`` when the code is unknown)."""
    code = meta.get("code", "")
    message = str(meta.get("message", "unknown error"))
    cls = CODES.get(code, default)
    if code in ("execution", "crashed"):
        return cls(message, remote_type=meta.get("type", ""),
                   remote_message=meta.get("remote_message", ""),
                   remote_traceback=meta.get("traceback", ""),
                   worker_id=meta.get("worker_id"))
    if code == "worker_lost":
        return cls(message, worker_id=meta.get("worker_id"),
                   cause=meta.get("cause"))
    if code == "poison_call":
        deaths = meta.get("deaths")
        return cls(message, worker_id=meta.get("worker_id"),
                   cause=meta.get("cause"),
                   deaths=deaths if isinstance(deaths, list) else ())
    if code == "workflow_validation":
        return cls(message, problems=meta.get("problems", ()))
    if code == "chained_execution":
        return cls(message, workflow_id=meta.get("workflow_id", ""),
                   step=meta.get("step", ""), cause=meta.get("cause", ""),
                   remote_type=meta.get("type", ""),
                   remote_message=meta.get("remote_message", ""),
                   remote_traceback=meta.get("traceback", ""),
                   worker_id=meta.get("worker_id"))
    return cls(message)
