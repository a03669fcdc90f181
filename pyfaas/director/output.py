"""The Director loop's writing side: frames out to peers.

A mixin of :class:`pyfaas.director.loop.Director`. Frames the state queued in a
loop turn go out per peer in one write (``_apply_output``); what a socket
does not take at once waits in the peer's output buffer for ``_flush``,
once select says it is writable. The hot path's lone frame goes out at
once (``_emit``) when nothing could be coalesced with it.
"""

import selectors
import ssl
import time

IOV_MAX = 512
SMALL_OUTPUT = 16 * 1024  # joined and sent with send(), not sendmsg()
_READ = selectors.EVENT_READ
_WRITE = selectors.EVENT_WRITE
_WOULD_BLOCK = (BlockingIOError, InterruptedError, ssl.SSLWantReadError,
                ssl.SSLWantWriteError)


class Output:
    """Writing frames; mixed into Director (uses its ``state``, ``_conns``,
    ``_single``, ``_tls``, ``_max_output``, ``_want`` and ``_drop``)."""

    def _emit(self, peer_id, head, payload):
        """The state's hot path for one frame (``DirectorState.emit``).

        A frame whose payload is at most SMALL_OUTPUT bytes goes out now to
        a peer with nothing queued or unwritten when it is the first frame
        emitted in a loop turn whose one event was one whole frame (a
        synchronous call's). Anything else is queued for _apply_output,
        which coalesces each peer's frames into one write. Output queued
        for the peer keeps this frame queued too, so a peer's frames never
        overtake each other (frames for other peers may be queued before
        it: each peer's order is what counts).
        """
        state = self.state
        if self._single and len(payload) <= SMALL_OUTPUT and \
                peer_id not in state.outbox:
            self._single = False  # what follows in this turn is coalesced
            conn = self._conns.get(peer_id)
            if conn is not None and not conn.out and conn.sock is not None \
                    and conn.closing is None and not conn.tls:
                data = head + payload
                try:
                    sent = conn.sock.send(data)
                except _WOULD_BLOCK:
                    sent = 0
                except OSError:
                    sent = -1  # _apply_output's send fails again and drops it
                if sent == len(data):
                    return
                if sent >= 0:
                    conn.out.append(memoryview(data)[sent:])
                    conn.out_bytes += len(data) - sent
                    self._want(conn, _READ | _WRITE)
                    return
        state.queue(peer_id, head, payload)

    def _apply_output(self):
        state = self.state
        conns = self._conns
        while state.outbox or state.closing:
            outbox, closing = state.take_output()
            for peer_id, parts in outbox.items():
                conn = conns.get(peer_id)
                if conn is None or conn.sock is None:
                    continue
                if not conn.out and conn.closing is None and not conn.tls \
                        and len(parts) <= 2 and len(parts[-1]) <= SMALL_OUTPUT:
                    # The usual case: one small frame for a peer with nothing
                    # waiting. It goes out joined, in one send() (measured:
                    # 3-4 us cheaper than sendmsg's scatter list).
                    data = parts[0] if len(parts) == 1 else parts[0] + parts[1]
                    try:
                        sent = conn.sock.send(data)
                    except _WOULD_BLOCK:
                        sent = 0
                    except OSError as exc:
                        self._drop(conn, "send failed: %s" % exc)
                        continue
                    if sent == len(data):
                        continue
                    parts = [memoryview(data)[sent:]]
                conn.out.extend(parts)
                conn.out_bytes += sum(map(len, parts))
                if conn.out_bytes > self._max_output:
                    self._drop(conn, "output buffer over %d bytes (peer not "
                                     "reading)" % self._max_output)
                    continue
                if not conn.tls_handshake:
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
        out = conn.out
        sock = conn.sock
        tls = self._tls is not None
        while out:
            try:
                if tls:  # SSLSocket has no sendmsg: write joined pieces
                    sent = sock.send(b"".join(out[:64]))
                elif conn.out_bytes <= SMALL_OUTPUT:
                    # Joining a few small pieces costs less than the
                    # scatter list sendmsg builds (measured: 3-4 us a send).
                    sent = sock.send(b"".join(out) if len(out) > 1
                                     else out[0])
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
        if not out and conn.closing is not None:
            self._drop(conn, conn.closing)
            return
        # A connection being closed is not read any more: watching it for
        # reads would wake the loop for bytes nobody takes.
        self._want(conn, (_READ if conn.closing is None else 0)
                   | (_WRITE if out else 0))
