"""Logging setup for the Director, Workers and clients.

Owns the handlers PyFaaS attaches to its own ``"pyfaas"`` logger tree: a
stdout handler at the configured level (none when the level is ``""``) and,
for the Director and Workers, an append-mode log file. It never touches the
root logger, so an application embedding the client keeps its own logging.
It also points :mod:`faulthandler` at a Worker's log file, so a crash
(a segfault in a C extension, say) leaves the Python stacks of its threads
there.
It does not read configuration files (``config.py`` does).
"""

import faulthandler
import logging
import os
import sys

from .errors import PyFaaSConfigError

# Marks the handlers this module added, so a second setup call removes them
# instead of stacking duplicates (tests and embedding apps call it twice).
_OWNED = "_pyfaas_owned"


_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO,
           "warning": logging.WARNING, "error": logging.ERROR,
           "critical": logging.CRITICAL}


def _level(log_level):
    if not log_level:
        return logging.INFO
    try:
        return _LEVELS[log_level.lower()]
    except KeyError:
        raise PyFaaSConfigError(
            "log_level: expected \"\" or one of %s, got %r"
            % (", ".join(_LEVELS), log_level)) from None


def _reset(logger):
    for handler in list(logger.handlers):
        if getattr(handler, _OWNED, False):
            logger.removeHandler(handler)
            handler.close()


def _add(logger, handler, level, fmt):
    setattr(handler, _OWNED, True)
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter(fmt))
    logger.addHandler(handler)


def setup_logging(component, log_level, log_directory, log_filename):
    """Configure the ``"pyfaas"`` logger for a Director or a Worker.

    Args:
        component: word put in every line, e.g. ``"director"`` or
            ``"worker-3"``.
        log_level: stdout level name (any case), or ``""`` for no stdout.
        log_directory: directory of the log file; created with its parents
            (``""`` means the working directory).
        log_filename: the log file's name; lines are appended.

    Returns:
        The ``"pyfaas"`` logger.

    Raises:
        PyFaaSConfigError: ``log_level`` is not a level name, or the
            directory cannot be created or the file cannot be opened.
    """
    logger = logging.getLogger("pyfaas")
    _reset(logger)
    level = _level(log_level)
    fmt = ("%(asctime)s %(levelname)s " + component.replace("%", "%%")
           + " %(name)s: %(message)s")
    if log_directory:
        try:
            os.makedirs(log_directory, exist_ok=True)
        except OSError as exc:
            raise PyFaaSConfigError(
                "%s: cannot create log directory: %s (log_directory)"
                % (log_directory, exc.strerror or exc)) from None
    file_path = os.path.join(log_directory, log_filename)
    try:
        file_handler = logging.FileHandler(file_path, mode="a",
                                           encoding="utf-8")
    except OSError as exc:
        raise PyFaaSConfigError(
            "%s: cannot open log file: %s (log_directory, log_filename)"
            % (file_path, exc.strerror or exc)) from None
    _add(logger, file_handler, level, fmt)
    if log_level:
        _add(logger, logging.StreamHandler(sys.stdout), level, fmt)
    logger.setLevel(level)
    logger.propagate = False
    return logger


def enable_crash_traces(log_directory, log_filename):
    """Have a fatal signal (SIGSEGV, SIGFPE, SIGABRT, SIGBUS, SIGILL) write
    the stacks of every thread to the log file (:mod:`faulthandler`).

    The file stays open for the life of the process; nothing happens when
    it cannot be opened (setup_logging has said so already).
    """
    global _crash_file
    try:
        _crash_file = open(os.path.join(log_directory, log_filename), "a")
    except OSError:
        return
    faulthandler.enable(file=_crash_file, all_threads=True)


_crash_file = None


def setup_client_logging(log_level):
    """Configure stdout logging of the ``"pyfaas.client"`` logger.

    Args:
        log_level: level name (any case), or ``""`` to add no handler.

    Returns:
        The ``"pyfaas.client"`` logger.

    Raises:
        PyFaaSConfigError: ``log_level`` is not a level name.
    """
    logger = logging.getLogger("pyfaas.client")
    _reset(logger)
    if log_level:
        level = _level(log_level)
        _add(logger, logging.StreamHandler(sys.stdout), level,
             "%(asctime)s %(levelname)s client %(name)s: %(message)s")
        logger.setLevel(level)
        # Our handler prints the records; don't print them again through
        # the application's root handlers.
        logger.propagate = False
    else:
        # Off: leave the records to whatever logging the application has.
        logger.setLevel(logging.NOTSET)
        logger.propagate = True
    return logger
