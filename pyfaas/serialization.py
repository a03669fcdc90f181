"""Serialization of functions, arguments, results and remote exceptions.

The only module of the package that imports ``pickle``/``cloudpickle`` (the
Worker's persistence aside). Frames carry what it produces as opaque bytes;
the Director never calls into it. It owns:

* functions travel by value, so closures, lambdas, functions from
  ``__main__`` and functions from the user's own modules (which a Worker
  cannot import) all work;
* the function id, a digest of the registered name and the pickled code;
* a JSON description of a function's signature, which lets any client check
  a call's arguments before sending it;
* remote exceptions as plain data (type name, message, traceback text).
"""

import functools
import inspect
import json
import linecache
import os
import pickle
import reprlib
import sys
import sysconfig
import traceback

import cloudpickle

from .errors import PyFaaSSerializationError

PICKLE_PROTOCOL = pickle.HIGHEST_PROTOCOL
_quick_dumps = pickle.dumps


def _library_dirs():
    dirs = set()
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        path = sysconfig.get_paths().get(key)
        if path:
            dirs.add(os.path.realpath(path))
    for prefix in (sys.prefix, sys.base_prefix, sys.exec_prefix):
        dirs.add(os.path.realpath(os.path.join(prefix, "lib")))
    return tuple(sorted(dirs))


_LIBRARY_DIRS = _library_dirs()


def _is_user_module(module):
    """True for a module a Worker probably cannot import: the user's own code."""
    name = getattr(module, "__name__", "")
    if name == "__main__" or name.split(".")[0] in ("pyfaas", "cloudpickle"):
        return False
    path = getattr(module, "__file__", None)
    if not path:
        return False
    path = os.path.realpath(path)
    return not any(path.startswith(d + os.sep) for d in _LIBRARY_DIRS)


def _user_modules_of(fn):
    """The user modules that ``fn`` and the globals it uses come from."""
    found = {}
    seen = set()
    stack = [fn]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        module = sys.modules.get(getattr(obj, "__module__", None) or "")
        if module is not None and _is_user_module(module):
            found[module.__name__] = module
        if isinstance(obj, functools.partial):
            stack.append(obj.func)
            stack.extend(v for v in obj.args + tuple(obj.keywords.values())
                         if callable(v))
            continue
        for cell in getattr(obj, "__closure__", None) or ():
            try:
                value = cell.cell_contents
            except ValueError:  # an empty cell
                continue
            if inspect.isfunction(value) or inspect.isclass(value) or \
                    isinstance(value, functools.partial):
                stack.append(value)
            elif inspect.ismodule(value) and _is_user_module(value):
                found[value.__name__] = value
        code = getattr(obj, "__code__", None)
        if code is None:
            continue
        fn_globals = getattr(obj, "__globals__", {})
        names = set(code.co_names)
        for const in code.co_consts:
            if inspect.iscode(const):
                names.update(const.co_names)
        for name in names:
            value = fn_globals.get(name)
            if inspect.isfunction(value) or inspect.isclass(value):
                stack.append(value)
            elif inspect.ismodule(value) and _is_user_module(value):
                found[value.__name__] = value
    return list(found.values())


def dumps_function(fn):
    """Pickle a callable by value.

    Returns:
        bytes: the cloudpickle of ``fn``.

    Raises:
        PyFaaSSerializationError: ``fn`` cannot be pickled.
    """
    registered = []
    try:
        for module in _user_modules_of(fn):
            try:
                cloudpickle.register_pickle_by_value(module)
                registered.append(module)
            except ValueError:
                pass  # already registered, or not importable by name
        return cloudpickle.dumps(fn, protocol=PICKLE_PROTOCOL)
    except Exception as exc:
        raise PyFaaSSerializationError(
            "function %r cannot be serialized: %s: %s"
            % (getattr(fn, "__name__", fn), type(exc).__name__, exc))
    finally:
        for module in registered:
            cloudpickle.unregister_pickle_by_value(module)


DYNAMIC_FILENAME = "<dynamic-code>"
MAX_SOURCE_CHARS = 16384


def source_info(fn):
    """Where ``fn`` was written: file name, first line and its source lines.

    cloudpickle 3.1+ replaces the file name of code it pickles by value with
    "<dynamic-code>"; this lets the Worker put it back so remote tracebacks
    name the user's file and show the failing line. None if unknown.
    """
    code = getattr(fn, "__code__", None)
    if code is None:
        return None
    info = {"file": code.co_filename}
    try:
        lines, first = inspect.getsourcelines(fn)
    except (OSError, TypeError):
        return info
    if sum(len(line) for line in lines) <= MAX_SOURCE_CHARS:
        info.update(first_line=first, lines=lines)
    return info


def _rename_code(code, filename):
    consts = tuple(_rename_code(c, filename) if inspect.iscode(c) else c
                   for c in code.co_consts)
    if code.co_filename != DYNAMIC_FILENAME:
        return code.replace(co_consts=consts)
    return code.replace(co_filename=filename, co_consts=consts)


def restore_source(fn, info):
    """Give an unpickled function back its file name and source lines."""
    code = getattr(fn, "__code__", None)
    if code is None or not isinstance(info, dict):
        return
    filename = info.get("file")
    if not isinstance(filename, str) or not filename:
        return
    if code.co_filename == DYNAMIC_FILENAME:
        try:
            fn.__code__ = _rename_code(code, filename)
        except (TypeError, ValueError, AttributeError):
            return
    lines, first = info.get("lines"), info.get("first_line")
    if isinstance(lines, list) and isinstance(first, int) and first > 0 \
            and not os.path.exists(filename) \
            and filename not in linecache.cache:
        padded = ["\n"] * (first - 1) + [str(x) for x in lines]
        linecache.cache[filename] = (sum(map(len, padded)), None, padded,
                                     filename)


def loads(data):
    """Unpickle trusted bytes (a function, arguments or a result)."""
    return pickle.loads(data)


def dumps(obj, what="value", of=None):
    """Pickle arguments or a result (``what``, of function ``of``).

    The C pickler is tried first (several times quicker for plain data);
    cloudpickle takes over for what it cannot do by itself (lambdas, local
    classes) and whenever the quick pickle refers to ``__main__``, which the
    other side could not resolve by name.

    Raises:
        PyFaaSSerializationError: naming ``what`` and the offending type.
    """
    try:
        data = _quick_dumps(obj, PICKLE_PROTOCOL)
        if b"__main__" not in data:
            return data
    except Exception:
        pass
    try:
        return cloudpickle.dumps(obj, protocol=PICKLE_PROTOCOL)
    except Exception as exc:
        if of is not None:
            what = "%s of %r" % (what, of)
        raise PyFaaSSerializationError(
            "%s of type %s cannot be serialized: %s: %s"
            % (what, type(obj).__name__, type(exc).__name__, exc))


def describe_signature(fn):
    """A JSON-ready description of ``fn``'s parameters, or None if unknown."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    return [[p.name, int(p.kind), p.default is not inspect.Parameter.empty,
             _short_repr(p.default)
             if p.default is not inspect.Parameter.empty else None]
            for p in sig.parameters.values()]


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 100
_REPR.maxlong = 60


def short_repr(value, limit=120):
    """A bounded repr, cheap even for huge values (reprlib truncates first)."""
    try:
        text = _REPR.repr(value)
    except Exception:
        text = "<%s>" % type(value).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _short_repr(value):
    return short_repr(value, 60)


class _Shown:
    """A default value shown by its repr in a rebuilt signature."""

    def __init__(self, text):
        self.text = text

    def __repr__(self):
        return self.text


_KINDS = {int(k): k for k in (
    inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD,
    inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.KEYWORD_ONLY,
    inspect.Parameter.VAR_KEYWORD)}


def signature_from_description(desc):
    """Rebuild an ``inspect.Signature``; defaults are stand-ins showing the repr."""
    params = []
    for entry in desc:
        name, kind, has_default = entry[:3]
        shown = entry[3] if len(entry) > 3 and entry[3] is not None else "..."
        params.append(inspect.Parameter(
            name, _KINDS[kind],
            default=_Shown(shown) if has_default else inspect.Parameter.empty))
    return inspect.Signature(params)


def signature_text(desc):
    """Human-readable signature, e.g. ``(a, b, c=12)``."""
    return str(signature_from_description(desc))


def check_arguments(desc, args, kwargs):
    """Return None if ``args``/``kwargs`` fit the described signature, else why."""
    if desc is None:
        return None
    try:
        signature_from_description(desc).bind(*args, **kwargs)
    except TypeError as exc:
        return str(exc)
    return None


# What a remote exception may take in an ERROR frame's meta (JSON-encoded
# bytes; the meta of a frame is at most 65535 bytes, and the message is
# there twice, once inside the reply's own message).
MESSAGE_LIMIT = 4096
TRACEBACK_LIMIT = 16384


def _encoded(text):
    return len(json.dumps(text)) - 2


def clip_start(text, limit=MESSAGE_LIMIT):
    """``text`` if it takes at most ``limit`` bytes in JSON, else its start
    and a marker saying how long it was."""
    if len(text) <= limit // 6 or _encoded(text) <= limit:
        return text
    keep = text[:limit - 80]
    while _encoded(keep) > limit - 80:
        keep = keep[:len(keep) * 3 // 4]
    return "%s... [cut: %d characters in all]" % (keep, len(text))


def clip_end(text, limit=TRACEBACK_LIMIT):
    """``text`` if it takes at most ``limit`` bytes in JSON, else a marker
    and its end."""
    if len(text) <= limit // 6 or _encoded(text) <= limit:
        return text
    keep = text[-(limit - 80):]
    while _encoded(keep) > limit - 80:
        keep = keep[len(keep) // 4:]
    return "[cut: the first %d of %d characters]\n...%s" % (
        len(text) - len(keep), len(text), keep)


def exception_info(exc, skip_frames=0):
    """A remote exception as plain data: type name, message, traceback text.

    ``skip_frames`` drops that many outer frames (the Worker's own) from the
    traceback so the user sees their function's frames. A long message is
    cut to its start, a long traceback to its end (the innermost frames and
    the exception line, whose message is cut the same way), each with a
    marker (MESSAGE_LIMIT, TRACEBACK_LIMIT): the reply must fit in a frame.
    """
    tb = exc.__traceback__
    for _ in range(skip_frames):
        if tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
    message = str(exc)
    short = clip_start(message)
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    if short is not message and text.endswith(message + "\n"):
        text = text[:len(text) - len(message) - 1] + short + "\n"
    return {
        "type": type(exc).__name__,
        "message": short,
        "traceback": clip_end(text),
    }


def to_json(obj):
    """Compact JSON bytes for frame payloads (non-JSON values become repr)."""
    return json.dumps(obj, separators=(",", ":"), default=repr).encode("utf-8")


def from_json(data):
    """Parse a JSON payload."""
    return json.loads(bytes(data).decode("utf-8"))
