"""What a client knows of the registered functions' parameters.

Owns :class:`Signatures`: each function's parameter description as the
Director lists it (kept from LIST, DEPLOY and UNDEPLOY answers), the check
that a call's arguments bind to it before anything is sent, and the
argument shapes known to bind (a :class:`pyfaas.memo.Memo`); plus the
checks of ``exec``'s ``args``/``kwargs`` and its options, and the meta a
registration sends (:func:`deploy_meta`). No I/O: when it
does not know a function, it asks the function it was given to list them.
"""

from .. import serialization as ser
from ..errors import (PyFaaSError, PyFaaSFunctionRegistrationError,
                      PyFaaSParameterMismatchError)
from ..memo import Memo
from ..wire import protocol as p

# The largest DEPLOY meta a client sends (frame meta is at most 64 KiB).
META_BUDGET = 48 * 1024


class Signatures:
    """Parameters of registered functions, and argument shapes that bind.

    Args:
        list_functions: re-reads the Director's listing (``Client.list``),
            which then calls :meth:`learn`.
    """

    def __init__(self, list_functions):
        self.params = {}          # name or func_id -> params description
        # (name, n args, kw names) known to bind -> the encoded meta of an
        # option-less call of name
        self.fitting = Memo()
        self._list = list_functions

    def learn(self, listing):
        """Take the parameters of every function of a LIST answer."""
        for fid, info in listing.items():
            params = info.get("params")
            self.params[fid] = params
            self.params[info["name"]] = params
        self.fitting.clear()

    def registered(self, name, answer, params):
        """A DEPLOY of ``name`` was answered (``answer``: its meta)."""
        self.fitting.clear()
        self.params[name] = params
        self.params[answer["func_id"]] = params
        if answer.get("replaced"):
            self.params.pop(answer["replaced"], None)

    def unregistered(self, answer):
        """An UNDEPLOY was answered (``answer``: its meta)."""
        self.fitting.clear()
        self.params.pop(answer.get("name"), None)
        self.params.pop(answer.get("func_id"), None)

    def check(self, name, args, kwargs, shape):
        """Raise if the arguments do not bind to ``name``'s signature;
        return the encoded meta of an option-less call, kept for ``shape``
        when they do bind.

        Raises:
            PyFaaSParameterMismatchError: they do not bind (nothing sent).
        """
        meta = p.encode_meta({"f": name})
        if name not in self.params:
            try:
                self._list()
            except PyFaaSError:
                return meta  # the Director will say what is wrong
        params = self.params.get(name)
        why = ser.check_arguments(params, args, kwargs)
        if why is not None:
            self._list()  # the signature kept may be stale: look again
            params = self.params.get(name)
            why = ser.check_arguments(params, args, kwargs)
            if why is not None:
                raise PyFaaSParameterMismatchError(
                    "arguments do not fit %s%s: %s"
                    % (name, ser.signature_text(params), why))
        if params is not None:
            self.fitting.keep(shape, meta)
        return meta


def call_options(save_in_cache=False, timeout=None, retries=0):
    """The options of a call, as its meta carries them."""
    options = {}
    if save_in_cache:
        options["cache"] = True
    if timeout is not None:
        options["timeout"] = float(timeout)
    if retries:
        options["retries"] = int(retries)
    return options


def checked_arguments(args, kwargs):
    """``(args tuple, kwargs dict)`` of ``exec``, or a clear error."""
    if args is None:
        args = ()
    elif not isinstance(args, (list, tuple)):
        raise PyFaaSParameterMismatchError(
            "args must be a list or a tuple of positional arguments, got %s "
            "(wrap a single argument: [value])" % type(args).__name__)
    if kwargs is None:
        kwargs = {}
    elif not isinstance(kwargs, dict):
        raise PyFaaSParameterMismatchError(
            "kwargs must be a dict of keyword arguments, got %s"
            % type(kwargs).__name__)
    return args, kwargs


def deploy_meta(name, params, doc=None, idempotent=False, source=None):
    """The meta of a DEPLOY of ``name``: its parameters, and its docstring
    and source when they fit (they are only helpful extras, left out when
    the meta would exceed META_BUDGET).

    Raises:
        PyFaaSFunctionRegistrationError: the name and parameters alone are
            over META_BUDGET.
    """
    meta = {"name": name, "params": params, "doc": (doc or "").strip()[:500]}
    if source:
        meta["source"] = source
    if idempotent:
        meta["idempotent"] = True
    for extra in ("source", "doc"):
        if len(p.encode_meta(meta)) <= META_BUDGET:
            return meta
        meta.pop(extra, None)
    if len(p.encode_meta(meta)) > META_BUDGET:
        raise PyFaaSFunctionRegistrationError(
            "cannot register %r: its name and signature take more than %d "
            "bytes" % (name[:80], META_BUDGET))
    return meta
