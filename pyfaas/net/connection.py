"""Blocking connections to the Director, for Workers and clients.

Owns the client side of the handshake, whole-frame sends and receives on a
blocking socket, and the translation of ``OSError`` / ``socket.timeout`` into
PyFaaS errors: this is the one place where raw socket errors are caught.
It knows nothing about what frames mean beyond the handshake.
"""

import errno
import select
import socket
import ssl
import struct
import sys
import threading
import time

from ..wire import protocol as p
from ..wire import auth
from ..wire.decoder import FrameDecoder
from .keepalive import keep_alive
from .tls import LockedTLSSocket
from ..errors import (PyFaaSAuthenticationError, PyFaaSError, error_from_meta,
                     PyFaaSNetworkError, PyFaaSProtocolError,
                     PyFaaSTimeoutError, PyFaaSTokenMissingError,
                     PyFaaSTokenRejectedError)

RECV_CHUNK = 64 * 1024           # under malloc's mmap threshold: no
LARGE_RECV_CHUNK = 256 * 1024    # mmap per receive, except in large frames
MIN_SEND_TIMEOUT_S = 5.0
RECV_SLICE_S = 1.0  # SO_RCVTIMEO of a blocking socket: see recv_frame
# OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH and X509_V_ERR_IP_ADDRESS_MISMATCH
NAME_MISMATCH = (62, 64)


def send_parts(sock, parts, send_timeout=None):
    """Send every byte of ``parts`` (bytes-like pieces) on a blocking socket.

    Pieces under SMALL_WRITE bytes in a row are joined and sent with one
    ``sendall`` (a batch of small frames is one write); a larger piece (a
    large payload) is sent from where it is. ``send_timeout``: the socket
    is in blocking mode with SO_SNDTIMEO set to it, which counts per system
    call; a large send must end within it as a whole, so SO_SNDTIMEO is
    lowered to the time left as it goes (only one thread sends at a time),
    and restored after.
    """
    if len(parts) == 1 and len(parts[0]) < p.SMALL_WRITE:
        sock.sendall(parts[0])  # the usual: one small frame
        return
    deadline = None if send_timeout is None \
        else time.monotonic() + send_timeout
    lowered = False
    small = []
    try:
        for part in parts + [b""]:
            if 0 < len(part) < p.SMALL_WRITE:
                small.append(part)
                continue
            if small:
                sock.sendall(small[0] if len(small) == 1 else b"".join(small))
                small = []
            if not part:
                continue
            if deadline is None:
                sock.sendall(part)
                continue
            view = memoryview(part).cast("B")
            while len(view):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise socket.timeout("timed out")
                if left < send_timeout:
                    lowered = True
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO,
                                    _timeval(max(left, 0.001)))
                view = view[sock.send(view):]
    finally:
        if lowered:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO,
                            _timeval(send_timeout))


def _timeval(seconds):
    whole = int(seconds)
    return struct.pack("ll", whole, int((seconds - whole) * 1e6))


def block_with_send_timeout(sock, seconds):
    """Make a plain TCP socket blocking, with sends bounded by SO_SNDTIMEO.

    A socket with a Python timeout polls before every send and receive (two
    system calls each); this one makes one. A send that cannot progress
    for ``seconds``, or a receive that gets nothing for RECV_SLICE_S
    (SO_RCVTIMEO), raises BlockingIOError. Returns False (socket left
    alone) where the options are not available.
    """
    if sys.platform == "win32" or not hasattr(socket, "SO_SNDTIMEO") or \
            not hasattr(socket, "SO_RCVTIMEO"):
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO,
                        _timeval(seconds))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO,
                        _timeval(RECV_SLICE_S))
    except (OSError, struct.error):
        return False
    sock.settimeout(None)
    return True


def wait_readable(sock, timeout):
    """True when ``sock`` has bytes (or EOF) to read within ``timeout`` s."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(max(0.0, timeout) * 1000.0))
    return bool(select.select([sock], [], [], max(0.0, timeout))[0])


class Connection:
    """A blocking, handshaken connection to a Director.

    Sends are thread-safe (one lock); receives must come from one thread.
    ``last_rx`` is the ``time.monotonic()`` of the last bytes received (a
    Worker judges its Director's silence by it, mid-frame bytes included).

    Args:
        config: the :class:`~pyfaas.config.ClientConfig` or
            :class:`~pyfaas.config.WorkerConfig` of this side: the
            Director's address (``director_ip_addr``, ``director_port``),
            the largest frame accepted from it (``max_frame_bytes``), and
            the file they came from (``path``), named in messages.
        role: ``protocol.ROLE_CLIENT`` or ``protocol.ROLE_WORKER``.
        timeout: seconds allowed for connecting and for the handshake (for
            a client, also what a reply is waited for: messages then point
            at ``receive_timeout_s``).
        token: the cluster token (bytes), or None.
        tls: an ``ssl.SSLContext`` to connect with, or None.
        send_timeout: seconds a send may take once connected (default: the
            larger of ``timeout`` and MIN_SEND_TIMEOUT_S).
    """

    def __init__(self, config, role, timeout, token=None, tls=None,
                 send_timeout=None):
        self.host = config.director_ip_addr
        self.port = config.director_port
        self.role = role
        self.timeout = timeout
        self.hint = " (receive_timeout_s in %s)" % config.path \
            if role == p.ROLE_CLIENT else ""
        self.token = token
        self.tls = tls
        self.token_hint = "$PYFAAS_TOKEN or [security] token_file in %s" \
            % config.path
        self.name = "%s:%s" % (self.host, self.port)
        self.max_frame_size = config.max_frame_bytes
        self.send_timeout = send_timeout or max(timeout, MIN_SEND_TIMEOUT_S)
        self._blocking = False     # plain socket in blocking mode
        self._decoder = FrameDecoder(p.HANDSHAKE_MAX_FRAME_SIZE)
        self._send_lock = threading.Lock()
        self._sock = None
        self.closed = False
        self.hello = None
        self.last_rx = time.monotonic()  # when bytes last arrived

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
            raise PyFaaSNetworkError(
                "cannot reach director %s: %s (is it running, and are the "
                "address and port right?)" % (self.name, exc.strerror or exc))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        keep_alive(sock)
        try:
            if self.tls is not None:
                try:
                    sock = LockedTLSSocket(self.tls.wrap_socket(
                        sock, server_hostname=self.host))
                except (ssl.SSLError, OSError) as exc:
                    sock.close()
                    hint = ""
                    if getattr(exc, "verify_code", None) in NAME_MISMATCH:
                        hint = (" (the certificate does not name %s: connect"
                                " by an address or DNS name that its "
                                "subjectAltName lists, or give the Director "
                                "a certificate for this one)" % self.host)
                    elif isinstance(exc, ssl.SSLCertVerificationError):
                        hint = (" (set [security] tls_ca_file to the "
                                "Director's certificate or its CA)")
                    raise PyFaaSNetworkError(
                        "TLS handshake with director %s failed: %s%s"
                        % (self.name, exc, hint))
                sock.settimeout(self.timeout)
            else:
                self._blocking = block_with_send_timeout(sock,
                                                         self.send_timeout)
            self._sock = sock
            self.send([p.encode_preamble(self.role)])
            frame = self._expect(p.HELLO, deadline)
            self.hello = frame.meta()
            self._authenticate(deadline)
        except PyFaaSError:
            self.close()
            raise
        self._decoder.max_frame_size = self.max_frame_size
        # The Director is trusted with our memory now: a large frame gets
        # its whole buffer at once and is received straight into it.
        self._decoder.preallocate = True
        # From now on the timeout bounds sends (a send that cannot progress
        # poisons the connection); receives without a deadline wait on.
        if not self._blocking:
            self._sock.settimeout(self.send_timeout)
        return self.hello

    def _expect(self, type_, deadline):
        frame = self.recv_frame(deadline)
        if frame.type == p.ERROR:
            raise error_from_meta(frame.meta(), PyFaaSProtocolError)
        if frame.type != type_:
            raise PyFaaSProtocolError(
                "director %s answered the handshake with a %s frame"
                % (self.name, p.TYPE_NAMES.get(frame.type, frame.type)))
        return frame

    def _authenticate(self, deadline):
        scheme = self.hello.get("auth", "none")
        if scheme == "none":
            if self.token is not None:
                raise PyFaaSAuthenticationError(
                    "director %s does not ask for a cluster token, but one is "
                    "configured here: refusing to trust an unauthenticated "
                    "director (configure the same token on it)" % self.name)
            return
        if scheme != auth.SCHEME:
            raise PyFaaSAuthenticationError(
                "director %s asks for authentication scheme %r, which this "
                "PyFaaS does not know" % (self.name, scheme))
        if self.token is None:
            raise PyFaaSTokenMissingError(
                "director %s requires a cluster token and none is configured "
                "(set %s)" % (self.name, self.token_hint))
        role = p.ROLE_NAMES[self.role]
        try:
            director_nonce = bytes.fromhex(self.hello["nonce"])
        except (KeyError, TypeError, ValueError):
            raise PyFaaSProtocolError("director %s sent a HELLO without a "
                                      "valid nonce" % self.name)
        nonce = auth.new_nonce()
        proof = auth.peer_proof(self.token, role, director_nonce, nonce)
        self.send(p.frame_parts(p.AUTH, 0, {"nonce": nonce.hex(),
                                                "mac": proof.hex()}))
        try:
            frame = self._expect(p.AUTH, deadline)
        except PyFaaSTokenRejectedError as exc:
            raise PyFaaSTokenRejectedError(
                "%s (the token used here comes from %s)" % (exc,
                                                           self.token_hint))
        expected = auth.director_proof(self.token, role, director_nonce,
                                           nonce)
        try:
            mac = bytes.fromhex(frame.meta().get("mac", ""))
        except (TypeError, ValueError):
            mac = b""
        if not auth.check(expected, mac):
            raise PyFaaSAuthenticationError(
                "director %s did not prove it holds the cluster token; "
                "refusing it" % self.name)

    def send(self, parts, block=True):
        """Send encoded frames (a list of parts). Thread-safe.

        A send that cannot finish within ``send_timeout`` closes the
        connection (half a frame would poison it). With ``block=False``,
        send nothing and return False when another thread is sending.
        """
        if not self._send_lock.acquire(block):
            return False
        try:
            sock = self._sock  # once: close() may clear it meanwhile
            if sock is None or self.closed:
                raise PyFaaSNetworkError("connection to director %s is closed"
                                         % self.name)
            try:
                send_parts(sock, parts,
                           self.send_timeout if self._blocking else None)
            except (socket.timeout, BlockingIOError) as exc:
                self.close()
                if exc.errno == errno.ETIMEDOUT:  # see _gave_up
                    raise self._gave_up(exc)
                raise PyFaaSTimeoutError(
                    "sending to director %s did not finish within %.1f s (is "
                    "it stuck, or the network?); the connection was closed"
                    % (self.name, self.send_timeout))
            except OSError as exc:
                self.close()
                raise PyFaaSNetworkError("connection to director %s lost "
                                         "while sending: %s" % (self.name, exc))
        finally:
            self._send_lock.release()
        return True

    def recv_frame(self, deadline=None, close_on_timeout=True):
        """Block until one whole frame arrives and return it.

        Args:
            deadline: a ``time.monotonic()`` value, or None to wait forever.
            close_on_timeout: when the deadline passes, close the connection
                and raise (the handshake's way); when False, return None
                instead: the bytes of a frame received so far stay in the
                decoder, so a later call (from any thread) goes on with it.

        Raises:
            PyFaaSTimeoutError: the deadline passed (the connection is then
                closed).
            PyFaaSNetworkError: the connection closed or broke.
            PyFaaSProtocolError: the Director sent bytes that are not frames.
        """
        decoder = self._decoder
        # The decoder is asked for a frame only when it holds bytes: after
        # a reply was taken, the next one needs a receive first.
        held = decoder.buffered
        while True:
            if held:
                try:
                    event = decoder.next_event()
                except p.ProtocolError as exc:
                    self.close()
                    raise PyFaaSProtocolError("director %s sent an invalid "
                                              "frame: %s" % (self.name, exc))
                if event is not p.NEED_DATA:
                    if event is p.CLOSED:
                        self.close()
                        raise PyFaaSNetworkError("director %s closed the "
                                                 "connection" % self.name)
                    return event
            sock = self._sock
            if sock is None or self.closed:
                raise PyFaaSNetworkError("connection to director %s is closed"
                                         % self.name)
            try:
                # (a blocking socket with a far deadline needs no poll: its
                # SO_RCVTIMEO bounds the wait; a TLS socket takes the
                # deadline itself)
                if deadline is not None and not (
                        self._blocking and
                        deadline - time.monotonic() > RECV_SLICE_S) and \
                        self.tls is None and \
                        not wait_readable(sock, deadline - time.monotonic()):
                    raise socket.timeout()
                target = None
                if decoder.gathering:  # the body of a large frame
                    size = LARGE_RECV_CHUNK
                    if self.tls is None:
                        target = decoder.recv_target()
                else:
                    size = RECV_CHUNK
                if target is not None:  # received straight into its buffer
                    got = sock.recv_into(target)
                    if got:
                        self.last_rx = time.monotonic()
                        decoder.wrote(got)
                        held = True
                        continue
                    data = b""
                elif deadline is not None and self.tls is not None:
                    data = sock.recv(size, deadline)
                else:
                    data = sock.recv(size)
            except (socket.timeout, BlockingIOError) as exc:
                if exc.errno == errno.ETIMEDOUT:
                    raise self._gave_up(exc)
                # A slice or the socket's idle timeout passed; the deadline?
                if deadline is None or deadline > time.monotonic():
                    continue
                if not close_on_timeout:
                    return None
                self.close()
                raise PyFaaSTimeoutError("director %s did not answer within "
                                         "%.1f s%s" % (self.name, self.timeout,
                                                       self.hint))
            except (OSError, ValueError) as exc:  # ValueError: fd closed
                raise self._broken(exc)
            self.last_rx = time.monotonic()
            decoder.feed(data)  # b"": the end of the stream
            held = True

    def _gave_up(self, exc):
        """The kernel closed the connection (keepalive or user timeout,
        net/keepalive.py): ETIMEDOUT, which Python raises as the same
        TimeoutError as a socket timeout, yet it is a broken connection."""
        self.close()
        return PyFaaSNetworkError(
            "connection to director %s lost: nothing came back from it for "
            "too long (%s); the network or its machine is down"
            % (self.name, exc.strerror or exc))

    def _broken(self, exc):
        """Close after a failed receive; the error to raise."""
        self.close()
        return PyFaaSNetworkError("connection to director %s lost: %s"
                                  % (self.name, exc))

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
