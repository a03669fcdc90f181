"""One connection accepted by the Director: its socket and its buffers.

Owns :class:`Conn`: the (non-blocking) socket of one peer, its frame
decoder, and the frames queued for it that the socket has not taken yet.
:meth:`Conn.write` sends what the socket takes now and keeps the rest for
:meth:`Conn.flush`; neither blocks. The event loop (:mod:`pyfaas.director.loop`) decides when to
read, when to write and when to close.
"""

import selectors
import socket
import ssl
import time

from ..wire.protocol import MAGIC, PREAMBLE, SMALL_WRITE

READ = selectors.EVENT_READ
WRITE = selectors.EVENT_WRITE
WOULD_BLOCK = (BlockingIOError, InterruptedError, ssl.SSLWantReadError,
               ssl.SSLWantWriteError)
IOV_MAX = 512             # pieces one sendmsg may take


class Conn:
    """A peer's connection, as the loop sees it."""

    __slots__ = ("id", "sock", "addr", "decoder", "out", "out_bytes",
                 "closing", "events", "trusted", "tls", "tls_handshake",
                 "last_rx", "closing_since")

    def __init__(self, peer_id, sock, addr, decoder, tls):
        self.id = peer_id
        self.sock = sock
        self.addr = addr
        self.decoder = decoder
        self.out = []             # bytes-like pieces not yet written
        self.out_bytes = 0
        self.closing = None       # reason, once the state asked to close
        self.events = READ        # what the selector watches
        self.trusted = False      # handshake done: full frame size allowed
        self.tls = tls            # wrapped in TLS (or about to be)
        self.tls_handshake = tls  # a TLS handshake is still running
        self.last_rx = time.monotonic()
        self.closing_since = 0.0

    def write(self, parts):
        """Send ``parts`` (frames: a list of byte pieces, kept as they are)
        now as far as the socket takes them, and keep the rest to
        :meth:`flush` later; when output already waits, or a TLS handshake
        runs, they only join it (as a transport's ``write`` does).

        Raises:
            OSError: the socket failed (not when it is merely full).
        """
        if self.out or self.tls_handshake or len(parts) > 1:
            if self.out:
                self.out += parts
            else:
                self.out = parts
            self.out_bytes += sum(map(len, parts))
            if not self.tls_handshake:
                self.flush()
            return
        data = parts[0]  # the usual: one frame, one piece, nothing waiting
        try:
            sent = self.sock.send(data)
        except WOULD_BLOCK:
            sent = 0
        if sent < len(data):
            self.out = [memoryview(data)[sent:]]
            self.out_bytes = len(data) - sent

    def flush(self):
        """Write as much of the waiting output as the socket takes now.

        Small output is joined into one ``send`` (cheaper than a scatter
        list; an SSLSocket has no ``sendmsg`` at all); large output goes
        out with ``sendmsg``, so large payloads are never copied.

        Raises:
            OSError: the socket failed (not when it is merely full).
        """
        out = self.out
        sock = self.sock
        while out:
            try:
                if self.out_bytes < SMALL_WRITE or self.tls:
                    sent = sock.send(out[0] if len(out) == 1
                                     else b"".join(out[:64]))
                else:
                    sent = sock.sendmsg(out[:IOV_MAX])
            except WOULD_BLOCK:
                return
            if sent == self.out_bytes:  # the usual case: all of it
                out.clear()
                self.out_bytes = 0
                return
            self.out_bytes -= sent
            # Drop the pieces fully written; keep the rest of a partial one.
            i = 0
            while i < len(out) and sent >= len(out[i]):
                sent -= len(out[i])
                i += 1
            del out[:i]
            if sent:
                out[0] = memoryview(out[0])[sent:]

    def first_byte(self):
        """Before the TLS handshake, what the peer's first byte says:
        ``"plain"`` (the clear-text preamble of a peer that speaks plain TCP
        to a TLS port; read, so that closing does not reset), ``"tls"``
        (anything else), ``"closed"``, or None (nothing came yet).

        Raises:
            OSError: the socket failed.
        """
        try:
            first = self.sock.recv(1, socket.MSG_PEEK)
        except WOULD_BLOCK:
            return None
        if not first:
            return "closed"
        if first != MAGIC[:1]:
            return "tls"
        try:
            self.sock.recv(PREAMBLE.size)
        except OSError:
            pass
        return "plain"

    def wanted(self):
        """The selector events to watch: reads unless closing (a closing
        peer's bytes are not read any more), writes while output waits."""
        return (READ if self.closing is None else 0) | (WRITE if self.out
                                                        else 0)
