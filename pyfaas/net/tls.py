"""TLS for PyFaaS connections (stdlib ``ssl`` only).

Owns the server and client ``SSLContext`` settings and
:class:`LockedTLSSocket`, which lets several threads share one TLS
connection. An OpenSSL connection object must not be used by two threads at
once: a reader inside ``SSL_read`` while another thread writes or closes can
corrupt the stream, and if the file descriptor is closed and reused by a
new connection, the old object's internal retries land on the new one. So
every TLS operation here runs under one lock on a non-blocking socket, and
waiting for the socket happens outside the lock, with ``poll``.
"""

import select
import socket
import ssl
import threading
import time

from ..errors import PyFaaSConfigError


def _why(exc):
    return getattr(exc, "strerror", None) or getattr(exc, "reason", None) \
        or str(exc)


def server_context(config):
    """The Director's ``SSLContext`` (TLS 1.2+) from its DirectorConfig, or
    None when no certificate is set.

    Raises:
        PyFaaSConfigError: a file is missing, unreadable or not PEM.
    """
    cert_file, key_file = config.tls_cert_file, config.tls_key_file
    config_path = config.path
    if not (cert_file or key_file):
        return None
    if not cert_file:
        raise PyFaaSConfigError("%s: [security] tls_cert_file: missing "
                                "(tls_key_file is set)" % config_path)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert_file, key_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise PyFaaSConfigError(
            "%s: [security] tls_cert_file %s / tls_key_file %s: cannot load "
            "the certificate and key: %s" % (config_path, cert_file,
                                            key_file or "(in the cert file)",
                                            _why(exc)))
    return ctx


def client_context(config):
    """The ``SSLContext`` a client or Worker connects with (it verifies the
    Director), or None when ``config`` (a ClientConfig or WorkerConfig)
    does not ask for TLS.

    Raises:
        PyFaaSConfigError: ``tls_ca_file`` is missing, unreadable or not PEM.
    """
    if not config.tls:
        return None
    ca_file = config.tls_ca_file
    try:
        ctx = ssl.create_default_context(cafile=ca_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise PyFaaSConfigError("%s: [security] tls_ca_file %s: cannot load "
                                "it: %s" % (config.path, ca_file, _why(exc)))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


class LockedTLSSocket:
    """The part of the socket API that :mod:`pyfaas.net.connection` uses, over a
    connected, handshaken ``SSLSocket``, safe to share between threads.

    ``recv`` and ``sendall`` honour ``settimeout`` like a socket does
    (raising ``socket.timeout``); errors are the ``ssl``/``OSError`` ones.
    """

    def __init__(self, ssl_sock):
        self._s = ssl_sock
        self._s.setblocking(False)
        self._lock = threading.Lock()
        self._timeout = None
        self._closed = False

    def settimeout(self, timeout):
        self._timeout = timeout

    def getsockname(self):
        return self._s.getsockname()

    def _deadline(self):
        return None if self._timeout is None else \
            time.monotonic() + self._timeout

    def _wait(self, want_write, deadline):
        poller = select.poll()
        try:
            poller.register(self._s.fileno(),
                            select.POLLOUT if want_write else select.POLLIN)
        except ValueError:  # closed meanwhile: its descriptor is -1
            raise OSError("the connection is closed")
        if deadline is None:
            ready = poller.poll()
        else:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("timed out")
            ready = poller.poll(left * 1000.0)
        if not ready:
            raise socket.timeout("timed out")

    def _run(self, operation, deadline):
        """Return ``operation()`` (one TLS read or write), run under the lock
        and again each time the socket is ready for what TLS waits for
        (waited for outside the lock) until ``deadline``."""
        while True:
            with self._lock:
                if self._closed:
                    raise OSError("the connection is closed")
                try:
                    return operation()
                except ssl.SSLWantReadError:
                    want_write = False
                except ssl.SSLWantWriteError:
                    want_write = True
            self._wait(want_write, deadline)

    def recv(self, size, deadline=None):
        """Like ``socket.recv``; ``deadline`` (a ``time.monotonic()`` value)
        replaces the ``settimeout`` one for this call only."""
        if deadline is None:
            deadline = self._deadline()
        return self._run(lambda: self._s.recv(size), deadline)

    def sendall(self, data):
        deadline = self._deadline()
        view = memoryview(data)
        while len(view):
            view = view[self._run(lambda: self._s.send(view), deadline):]

    def shutdown(self, how):
        # A plain TCP shutdown wakes a thread waiting in _wait; the TLS
        # object itself is left alone (no close_notify: the peer sees EOF).
        with self._lock:
            if not self._closed:
                socket.socket.shutdown(self._s, how)

    def close(self):
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                socket.socket.shutdown(self._s, socket.SHUT_RDWR)
            except OSError:
                pass
            self._s.close()
