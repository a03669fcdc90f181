"""The Worker's dump file: atomic save, checked load.

Owns the dump file format and its two operations. Layout::

    offset size field
    0      8    magic b"PYFAASDP"
    8      2    format version, uint16 big-endian (FORMAT_VERSION)
    10     6    reserved, zero
    16     8    body length, uint64 big-endian
    24     32   SHA-256 of the body
    56     N    body: a pickle of the Worker's state (a dict)

:func:`save` writes a temporary file beside the target, flushes and fsyncs
it, then ``os.replace``s it over the target: a Worker killed while writing
leaves the previous complete dump. The file is created readable by its
owner only (0600): it holds function code and results, which must be
protected like the cluster token; :func:`exposed` tells when an existing
one is not. :func:`load` checks magic, version,
length and checksum BEFORE unpickling anything; any problem (missing file
aside) is reported as :class:`DumpError` so the Worker can set the file
aside and start fresh. :func:`restore` and :func:`keep` do that for a
Worker's core (anything with ``state()``, ``load_state(state)``,
``functions`` and ``cache``) and log what happened.
"""

import hashlib
import logging
import os
import pickle
import struct
import time

log = logging.getLogger(__name__)

MAGIC = b"PYFAASDP"
FORMAT_VERSION = 1
HEADER = struct.Struct("!8sH6sQ32s")


class DumpError(Exception):
    """The dump file exists but cannot be used."""


def save(path, state):
    """Write ``state`` (picklable dict) to ``path`` atomically."""
    body = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
    header = HEADER.pack(MAGIC, FORMAT_VERSION, b"\0" * 6, len(body),
                         hashlib.sha256(body).digest())
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = "%s.tmp-%d" % (path, os.getpid())
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # (a leftover temporary file kept its mode)
        with open(fd, "wb") as fh:
            fh.write(header)
            fh.write(body)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass
    return len(header) + len(body)


def exposed(path):
    """The permission bits of the dump file at ``path`` if others (group
    or anyone) may read or write it, else None (also when it is missing)."""
    try:
        mode = os.stat(path).st_mode & 0o777
    except OSError:
        return None
    return mode if mode & 0o077 else None


def load(path):
    """Read a dump; return the state dict, or None if there is no file.

    Raises:
        DumpError: empty, truncated, foreign, other version, bad checksum, or
            a body that does not unpickle to a dict.
    """
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise DumpError("cannot read: %s" % (exc.strerror or exc))
    if not data:
        raise DumpError("the file is empty")
    if len(data) < HEADER.size:
        raise DumpError("the file is truncated (%d bytes, header needs %d)"
                        % (len(data), HEADER.size))
    magic, version, _, length, digest = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise DumpError("not a PyFaaS dump file (magic %r)" % magic)
    if version != FORMAT_VERSION:
        raise DumpError("dump format version %d; this PyFaaS reads version %d"
                        % (version, FORMAT_VERSION))
    body = data[HEADER.size:]
    if len(body) != length:
        raise DumpError("the file is truncated (body %d of %d bytes)"
                        % (len(body), length))
    if hashlib.sha256(body).digest() != digest:
        raise DumpError("checksum mismatch: the file is corrupted")
    try:
        state = pickle.loads(body)
    except Exception as exc:
        raise DumpError("the state cannot be unpickled: %s: %s"
                        % (type(exc).__name__, exc))
    if not isinstance(state, dict):
        raise DumpError("the state is a %s, not a dict" % type(state).__name__)
    return state


def lock(path):
    """Hold ``path + ".lock"`` exclusively for as long as this process runs.

    Returns:
        the open lock file (keep a reference), or None where the OS has no
        ``fcntl`` (then two Workers sharing a dump file are not detected).

    Raises:
        DumpError: another running process holds it.
    """
    try:
        import fcntl
    except ImportError:
        return None
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle = open(path + ".lock", "a")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise DumpError("it is in use by another running Worker")
    return handle


def unlock(handle):
    """Release a lock taken by :func:`lock` and remove its file."""
    try:
        os.unlink(handle.name)
    except OSError:
        pass
    handle.close()


def set_aside(path):
    """Rename a bad dump out of the way; return the new name (or None)."""
    aside = "%s.bad-%s" % (path, time.strftime("%Y%m%d-%H%M%S"))
    n = 1
    while os.path.exists(aside):
        n += 1
        aside = "%s.bad-%s-%d" % (path, time.strftime("%Y%m%d-%H%M%S"), n)
    try:
        os.replace(path, aside)
        return aside
    except OSError:
        return None


def restore(core, path):
    """Load ``path`` into ``core`` if there is a dump; a bad one is set
    aside (the Worker starts fresh); an exposed one is warned about."""
    mode = exposed(path)
    if mode is not None:
        log.warning("dump file %s can be read by other users (mode %04o): it "
                    "holds function code and cached results; run chmod 600 "
                    "on it (the next save writes it 0600)", path, mode)
    try:
        state = load(path)
    except DumpError as exc:
        aside = set_aside(path)
        log.warning("dump file %s is unusable (%s); moved to %s; starting "
                    "fresh", path, exc, aside or "(could not move it)")
        return
    if state is None:
        log.info("no dump file at %s; starting fresh", path)
        return
    try:
        core.load_state(state)
    except Exception as exc:  # a valid checksum over a foreign layout
        aside = set_aside(path)
        log.warning("dump file %s has an unexpected layout (%s: %s); moved "
                    "to %s; starting fresh", path, type(exc).__name__, exc,
                    aside)
        return
    log.info("state restored from %s: %d functions, %d cached results",
             path, len(core.functions), len(core.cache))


def keep(core, path):
    """Save ``core``'s state to ``path`` (atomically); a failure is logged."""
    try:
        size = save(path, core.state())
    except Exception as exc:
        log.error("could not save state to %s: %s: %s", path,
                  type(exc).__name__, exc)
        return
    log.info("state saved to %s (%d functions, %d cached results, %d bytes)",
             path, len(core.functions), len(core.cache), size)
