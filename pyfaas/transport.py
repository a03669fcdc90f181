"""Blocking connections to the Director, for Workers and clients.

Owns the client side of the handshake, whole-frame sends and receives on a
blocking socket, and the translation of ``OSError`` / ``socket.timeout`` into
PyFaaS errors: this is the one place where raw socket errors are caught.
It knows nothing about what frames mean beyond the handshake.
"""

import socket
import threading
import time

from . import protocol as p
from .errors import (CODES, PyFaaSError, PyFaaSNetworkError,
                     PyFaaSProtocolError, PyFaaSTimeoutError)

RECV_CHUNK = 256 * 1024


def error_from_meta(meta, default=PyFaaSError):
    """Build the exception an ERROR frame's meta describes."""
    code = meta.get("code", "")
    message = str(meta.get("message", "unknown error"))
    cls = CODES.get(code, default)
    if code == "execution":
        return cls(message, remote_type=meta.get("type", ""),
                   remote_message=meta.get("remote_message", ""),
                   remote_traceback=meta.get("traceback", ""),
                   worker_id=meta.get("worker_id"))
    if code == "worker_lost":
        return cls(message, worker_id=meta.get("worker_id"))
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


def send_parts(sock, parts):
    """Send every byte of ``parts`` (bytes-like pieces) on a blocking socket."""
    if len(parts) == 1 or sum(len(x) for x in parts) < 65536:
        sock.sendall(b"".join(parts))
        return
    for part in parts:
        sock.sendall(part)


class Connection:
    """A blocking, handshaken connection to a Director.

    Sends are thread-safe (one lock); receives must come from one thread.

    Args:
        host, port: the Director's address.
        role: ``protocol.ROLE_CLIENT`` or ``protocol.ROLE_WORKER``.
        timeout: seconds allowed for connecting and for the handshake.
        max_frame_size: the largest frame accepted from the Director.
        hint: where the user can change ``timeout`` (used in messages).
    """

    def __init__(self, host, port, role, timeout=20.0,
                 max_frame_size=p.DEFAULT_MAX_FRAME_SIZE, hint=""):
        self.host = host
        self.port = port
        self.role = role
        self.timeout = timeout
        self.hint = hint
        self.name = "%s:%s" % (host, port)
        self._decoder = p.FrameDecoder(max_frame_size)
        self._send_lock = threading.Lock()
        self._sock = None
        self.closed = False
        self.hello = None

    def connect(self):
        """Open the socket and run the handshake.

        Returns:
            dict: the meta of the Director's HELLO frame.

        Raises:
            PyFaaSNetworkError: the Director cannot be reached.
            PyFaaSTimeoutError: it did not finish the handshake in time.
            PyFaaSVersionError, PyFaaSProtocolError: it refused us.
        """
        deadline = time.monotonic() + self.timeout
        try:
            sock = socket.create_connection((self.host, self.port),
                                            timeout=self.timeout)
        except socket.timeout:
            raise PyFaaSTimeoutError(
                "director %s did not accept a connection within %.1f s%s"
                % (self.name, self.timeout, self.hint))
        except OSError as exc:
            raise PyFaaSNetworkError("cannot reach director %s: %s"
                                     % (self.name, exc.strerror or exc))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        try:
            self._sendall([p.encode_preamble(self.role)])
            frame = self.recv_frame(deadline)
        except PyFaaSError:
            self.close()
            raise
        if frame.type == p.ERROR:
            self.close()
            raise error_from_meta(frame.meta(), PyFaaSProtocolError)
        if frame.type != p.HELLO:
            self.close()
            raise PyFaaSProtocolError("director %s answered the handshake with"
                                      " frame type %d" % (self.name, frame.type))
        self.hello = frame.meta()
        sock.settimeout(None)
        return self.hello

    def send(self, parts):
        """Send one encoded frame (a list of parts). Thread-safe."""
        with self._send_lock:
            self._sendall(parts)

    def _sendall(self, parts):
        if self._sock is None or self.closed:
            raise PyFaaSNetworkError("connection to director %s is closed"
                                     % self.name)
        try:
            send_parts(self._sock, parts)
        except socket.timeout:
            self.close()
            raise PyFaaSTimeoutError("sending to director %s timed out%s"
                                     % (self.name, self.hint))
        except OSError as exc:
            self.close()
            raise PyFaaSNetworkError("connection to director %s lost while "
                                     "sending: %s" % (self.name, exc))

    def recv_frame(self, deadline=None):
        """Block until one whole frame arrives and return it.

        Args:
            deadline: a ``time.monotonic()`` value, or None to wait forever.

        Raises:
            PyFaaSTimeoutError: the deadline passed (the connection is then
                closed: a partial read poisons it).
            PyFaaSNetworkError: the connection closed or broke.
            PyFaaSProtocolError: the Director sent bytes that are not frames.
        """
        decoder = self._decoder
        while True:
            try:
                event = decoder.next_event()
            except p.ProtocolError as exc:
                self.close()
                raise PyFaaSProtocolError("director %s sent an invalid frame: "
                                          "%s" % (self.name, exc))
            if event is not p.NEED_DATA:
                return event
            sock = self._sock
            if sock is None or self.closed:
                raise PyFaaSNetworkError("connection to director %s is closed"
                                         % self.name)
            try:
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise socket.timeout()
                    sock.settimeout(left)
                elif sock.gettimeout() is not None:
                    sock.settimeout(None)
                data = sock.recv(RECV_CHUNK)
            except socket.timeout:
                self.close()
                raise PyFaaSTimeoutError("director %s did not answer within "
                                         "%.1f s%s" % (self.name, self.timeout,
                                                       self.hint))
            except OSError as exc:
                self.close()
                raise PyFaaSNetworkError("connection to director %s lost: %s"
                                         % (self.name, exc))
            if not data:
                self.close()
                raise PyFaaSNetworkError("director %s closed the connection"
                                         % self.name)
            decoder.feed(data)

    def local_address(self):
        """``"host:port"`` of our end of the socket, or "" when closed."""
        try:
            return "%s:%s" % self._sock.getsockname()[:2]
        except (OSError, AttributeError):
            return ""

    def shutdown_read(self):
        """Make a blocked ``recv_frame`` return (sends still work)."""
        try:
            if self._sock is not None:
                self._sock.shutdown(socket.SHUT_RD)
        except OSError:
            pass

    def close(self):
        """Close the socket. Idempotent."""
        self.closed = True
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
