"""The Director process: one ``selectors`` event loop that only moves bytes.

Owns the listening socket, the accepted non-blocking sockets, one frame
decoder and one output buffer per peer, the wake-up socketpair, and the
periodic heartbeat check. Every decision (who gets which frame, who is
evicted) is made by :class:`pyfaas.director_state.DirectorState`; this module
feeds it events and writes what it returns. A peer that sends bad bytes, or
whose handler fails, is logged with its address and dropped; everyone else
goes on.
"""

import logging
import selectors
import socket
import time

from . import protocol as p
from .director_state import DirectorState

log = logging.getLogger(__name__)

RECV_CHUNK = 256 * 1024
IOV_MAX = 512


class _Conn:
    __slots__ = ("id", "sock", "addr", "decoder", "out", "closing", "events")

    def __init__(self, peer_id, sock, addr, decoder):
        self.id = peer_id
        self.sock = sock
        self.addr = addr
        self.decoder = decoder
        self.out = []             # bytes-like pieces not yet written
        self.closing = None       # reason, once the state asked to close
        self.events = selectors.EVENT_READ


class Director:
    """A Director bound to its address, ready for :meth:`serve_forever`.

    Args:
        config: a :class:`pyfaas.config.DirectorConfig`.
    """

    def __init__(self, config):
        self.config = config
        self._sel = selectors.DefaultSelector()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((config.director_ip_addr, config.director_port))
        self._listener.listen(128)
        self._listener.setblocking(False)
        self.address = self._listener.getsockname()[:2]
        self._sel.register(self._listener, selectors.EVENT_READ, "accept")
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self.state = DirectorState(
            name="%s:%s" % self.address,
            strategy=config.worker_selection_strategy,
            expected_heartbeat_ms=config.expected_heartbeat_interval_ms,
            statistics_enabled=config.statistics_enabled,
            max_pending=config.max_pending_calls)
        self._conns = {}
        self._next_id = 1
        self._stopping = False

    # ----- lifecycle ---------------------------------------------------------

    def serve_forever(self):
        """Run the loop until :meth:`shutdown` is called."""
        interval = self.config.heartbeat_check_interval_ms / 1000.0
        next_check = time.monotonic() + interval
        select = self._sel.select
        try:
            while not self._stopping:
                timeout = max(0.0, next_check - time.monotonic())
                for key, mask in select(timeout):
                    data = key.data
                    if data == "accept":
                        self._accept()
                    elif data == "wake":
                        self._drain_wake()
                    else:
                        if mask & selectors.EVENT_READ:
                            self._read(data)
                        if mask & selectors.EVENT_WRITE and data.sock:
                            self._flush(data)
                if time.monotonic() >= next_check:
                    self.state.tick()
                    next_check = time.monotonic() + interval
                self._apply_output()
        finally:
            self._close_all()

    def shutdown(self):
        """Ask the loop to stop. Safe from a signal handler or another thread."""
        self._stopping = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def _drain_wake(self):
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def _close_all(self):
        for conn in list(self._conns.values()):
            self._drop(conn, "director stopping", notify=False)
        for sock in (self._listener, self._wake_r, self._wake_w):
            try:
                self._sel.unregister(sock)
            except (KeyError, ValueError):
                pass
            sock.close()
        self._sel.close()

    # ----- sockets -------------------------------------------------------------

    def _accept(self):
        while True:
            try:
                sock, addr = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. EMFILE: keep serving the others
                log.error("accept failed: %s", exc)
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            peer_id = self._next_id
            self._next_id += 1
            decoder = p.FrameDecoder(p.HANDSHAKE_MAX_FRAME_SIZE,
                                     expect_preamble=True)
            conn = _Conn(peer_id, sock, addr, decoder)
            self._conns[peer_id] = conn
            self._sel.register(sock, selectors.EVENT_READ, conn)
            self.state.connected(peer_id, addr)
            log.debug("connection %d from %s:%s", peer_id, addr[0], addr[1])

    def _read(self, conn):
        if conn.sock is None or conn.closing is not None:
            return
        try:
            data = conn.sock.recv(RECV_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._drop(conn, "receive failed: %s" % exc)
            return
        if not data:
            reason = "connection closed"
            if conn.decoder.in_frame:
                reason = "connection closed inside a frame"
            self._drop(conn, reason)
            return
        decoder = conn.decoder
        decoder.feed(data)
        state = self.state
        try:
            while conn.closing is None:
                event = decoder.next_event()
                if event is p.NEED_DATA:
                    break
                state.received(conn.id, event)
                if isinstance(event, p.Preamble):
                    peer = state.peers.get(conn.id)
                    if peer is not None and peer.ready:
                        decoder.max_frame_size = self.config.max_frame_bytes
        except p.ProtocolError as exc:
            log.warning("peer %s:%s sent bad bytes: %s; closing it",
                        conn.addr[0], conn.addr[1], exc)
            code = "frame_too_large" if isinstance(exc, p.FrameTooLarge) \
                else "protocol"
            state.error(conn.id, 0, code, "director %s: %s" % (state.name, exc))
            state.close(conn.id, str(exc))
        except Exception:
            log.exception("error while handling peer %s:%s; dropping it",
                          conn.addr[0], conn.addr[1])
            self._drop(conn, "internal error")

    def _apply_output(self):
        state = self.state
        while True:
            outbox, closing = state.take_output()
            if not outbox and not closing:
                return
            for peer_id, parts in outbox.items():
                conn = self._conns.get(peer_id)
                if conn is None or conn.sock is None:
                    continue
                conn.out.extend(parts)
                self._flush(conn)
            for peer_id, reason in closing.items():
                conn = self._conns.get(peer_id)
                if conn is None:
                    continue
                conn.closing = reason
                if not conn.out:
                    self._drop(conn, reason)

    def _flush(self, conn):
        out = conn.out
        sock = conn.sock
        while out:
            try:
                sent = sock.sendmsg(out[:IOV_MAX])
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                self._drop(conn, "send failed: %s" % exc)
                return
            # Drop the pieces fully written; keep the rest of a partial one.
            i = 0
            while i < len(out) and sent >= len(out[i]):
                sent -= len(out[i])
                i += 1
            del out[:i]
            if sent:
                out[0] = memoryview(out[0])[sent:]
        want = selectors.EVENT_READ | (selectors.EVENT_WRITE if out else 0)
        if want != conn.events:
            conn.events = want
            self._sel.modify(sock, want, conn)
        if not out and conn.closing is not None:
            self._drop(conn, conn.closing)

    def _drop(self, conn, reason, notify=True):
        if conn.sock is None:
            return
        log.debug("connection %d (%s:%s) closed: %s", conn.id, conn.addr[0],
                  conn.addr[1], reason)
        try:
            self._sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()
        conn.sock = None
        conn.out = []
        self._conns.pop(conn.id, None)
        if notify:
            self.state.disconnected(conn.id, reason)
