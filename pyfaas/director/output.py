"""The Director loop's writing side: frames out to peers.

A mixin of :class:`pyfaas.director.loop.Director`. Frames the state queued in a
loop turn go out per peer in one write (``_apply_output``); what a socket
does not take at once waits in the peer's output buffer for ``_flush``,
once select says it is writable.
"""

import selectors
import ssl
import time

from ..wire.protocol import SMALL_WRITE

IOV_MAX = 512
_READ = selectors.EVENT_READ
_WRITE = selectors.EVENT_WRITE
_WOULD_BLOCK = (BlockingIOError, InterruptedError, ssl.SSLWantReadError,
                ssl.SSLWantWriteError)


class Output:
    """Writing frames; mixed into Director (uses its ``state``, ``_conns``,
    ``_tls``, ``_max_output``, ``_want`` and ``_drop``)."""

    def _apply_output(self):
        """Write what the state queued: each peer's frames in one write."""
        state = self.state
        conns = self._conns
        while state.outbox or state.closing:
            outbox, closing = state.take_output()
            for peer_id, parts in outbox.items():
                conn = conns.get(peer_id)
                if conn is None or conn.sock is None:
                    continue
                if conn.out:
                    conn.out.extend(parts)
                else:
                    conn.out = parts  # the state hands the list over
                conn.out_bytes += sum(map(len, parts))
                if conn.out_bytes > self._max_output:
                    self._drop(conn, "output buffer over %d bytes (peer not "
                                     "reading)" % self._max_output)
                elif not conn.tls_handshake:
                    self._flush(conn)
            for peer_id, reason in closing.items():
                conn = conns.get(peer_id)
                if conn is None:
                    continue
                if conn.closing is None:
                    conn.closing = reason
                    conn.closing_since = time.monotonic()
                if not conn.out:
                    self._drop(conn, reason)
                elif not conn.tls_handshake:
                    self._flush(conn)

    def _flush(self, conn):
        """Write as much of ``conn``'s output as its socket takes now; watch
        for writability while some is left."""
        out = conn.out
        sock = conn.sock
        while out:
            try:
                if conn.out_bytes < SMALL_WRITE or conn.tls:
                    # (an SSLSocket has no sendmsg: pieces are joined)
                    sent = sock.send(out[0] if len(out) == 1
                                     else b"".join(out[:64]))
                else:
                    sent = sock.sendmsg(out[:IOV_MAX])
            except _WOULD_BLOCK:
                break
            except OSError as exc:
                self._drop(conn, "send failed: %s" % exc)
                return
            if sent == conn.out_bytes:  # the usual case: all of it
                out.clear()
                conn.out_bytes = 0
                break
            conn.out_bytes -= sent
            # Drop the pieces fully written; keep the rest of a partial one.
            i = 0
            while i < len(out) and sent >= len(out[i]):
                sent -= len(out[i])
                i += 1
            del out[:i]
            if sent:
                out[0] = memoryview(out[0])[sent:]
        if conn.closing is not None:
            if not out:
                self._drop(conn, conn.closing)
                return
            # A connection being closed is not read any more: watching it
            # for reads would wake the loop for bytes nobody takes.
            self._want(conn, _WRITE)
        elif out:
            self._want(conn, _READ | _WRITE)
        elif conn.events != _READ:
            self._want(conn, _READ)
