"""The Director process: one ``selectors`` event loop that only moves bytes.

Owns the listening socket, the accepted non-blocking sockets (TLS-wrapped
when configured), one frame decoder and one output buffer per peer, the
wake-up socketpair, the periodic checks (heartbeats, handshake deadlines,
and once a second the state's counts and, when the monitoring endpoint is
on, a new status document for it) and the graceful stop. Every decision
(who gets which frame, who is evicted, who is authenticated) is made by
:class:`pyfaas.director.state.DirectorState`; this module feeds it events
and writes what it returns. The monitoring endpoint's threads
(:mod:`pyfaas.director.monitoring.server`) only get documents from it.
A peer that sends bad bytes, or whose handler fails, is logged with its
address and dropped; everyone else goes on. Which connections are let in,
and which still in their handshake are closed to make room, is
:class:`pyfaas.director.admission.Admission`'s choice; out of file
descriptors, accepting pauses (``ACCEPT_PAUSE_S``) instead of spinning,
once the oldest connection still in its handshake was closed to no avail.
"""

import errno
import logging
import selectors
import socket
import ssl
import time

from .. import usage
from ..net.keepalive import keep_alive
from ..net.listener import listening_socket
from ..net.tls import server_context
from ..wire import protocol as p
from ..wire.decoder import FrameDecoder
from ..wire.protocol import CLOSED, NEED_DATA
from .admission import Admission, Throttle
from .conn import READ, WOULD_BLOCK, WRITE, Conn
from .state import DirectorState

log = logging.getLogger(__name__)

RECV_CHUNK = 64 * 1024          # under malloc's mmap threshold (no mmap
LARGE_RECV_CHUNK = 256 * 1024   # per receive) except inside large frames
HANDSHAKE_CHECK_S = 0.25
CLOSING_LINGER_S = 10.0   # a closing peer has this long to take its last frames
PAUSE_SLACK_S = 1.0       # a select that overslept this much: we were paused
SAMPLE_S = 1.0            # status history and monitoring document period
ACCEPT_PAUSE_S = HANDSHAKE_CHECK_S  # no file descriptor left: wait this long
NO_FD = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class Director:
    """A Director bound to its address, ready for :meth:`serve_forever`.

    Args:
        config: a :class:`pyfaas.config.DirectorConfig`.
        token: the cluster token (bytes) or None for no authentication.
    """

    def __init__(self, config, token=None):
        self.config = config
        self._tls = server_context(config)
        self._listener = listening_socket(config.director_ip_addr,
                                          config.director_port)
        self._sel = selectors.DefaultSelector()
        self._listener.setblocking(False)
        self.address = self._listener.getsockname()[:2]
        self._sel.register(self._listener, READ, "accept")
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sel.register(self._wake_r, READ, "wake")
        self.state = DirectorState(config, "%s:%s" % self.address, token,
                                   process=usage.figures)
        self._max_output = 4 * config.max_frame_bytes + 64 * 1024 * 1024
        self._admission = Admission(config.max_connections,
                                    config.max_handshaking,
                                    config.max_handshaking_per_addr,
                                    time.monotonic)
        self._accept_log = Throttle(10.0, time.monotonic)
        self._shed_log = Throttle(10.0, time.monotonic)
        self._accepting = True    # the listener is watched
        self._conns = {}
        self._next_id = 1
        self._stopping = False
        self.monitoring = None    # the MonitoringServer, when it is on
        if config.monitoring_enabled:
            # (imported only when on: http.server and what it pulls in
            # add 20-30 ms to every Director's start, the bench's "cluster
            # start to first result")
            from .monitoring.server import MonitoringServer
            try:
                self.monitoring = MonitoringServer(config, token)
            except BaseException:
                self._close_all()
                raise

    # ----- lifecycle ---------------------------------------------------------

    def serve_forever(self):
        """Run the loop until :meth:`shutdown`, then drain and close."""
        interval = self.config.heartbeat_check_interval_ms / 1000.0
        now = time.monotonic()
        next_check = now + interval
        next_handshakes = now + HANDSHAKE_CHECK_S
        due = min(next_check, next_handshakes)  # the next periodic check
        drain_until = None
        select = self._sel.select
        monotonic = time.monotonic
        state = self.state
        outbox = state.outbox
        next_sample = now + SAMPLE_S
        if self.monitoring is not None:
            self.monitoring.publish(state.status_document())
            self.monitoring.start()
        try:
            while True:
                if self._stopping:
                    if drain_until is None:
                        drain_until = self._begin_drain()
                    if (not state.client_work() and not self._client_output()) \
                            or monotonic() >= drain_until:
                        break
                before = monotonic()
                timeout = due - before if due > before else 0.0
                ready = select(timeout)
                now = monotonic()
                if now - before > timeout + PAUSE_SLACK_S:
                    # This process was stopped or starved: the heartbeats
                    # that came meanwhile are unread, not missing.
                    log.warning("the director's loop stalled for %.1f s",
                                now - before)
                    state.forgive_pause()
                for key, mask in ready:
                    conn = key.data
                    if conn.__class__ is not Conn:
                        if conn == "accept":
                            self._accept()
                        else:
                            self._drain_wake()
                    elif conn.tls_handshake:
                        self._tls_step(conn)
                    else:
                        if mask & READ:
                            self._read(conn)
                        if mask & WRITE and conn.sock:
                            self._flush(conn)
                if now >= due:
                    now = monotonic()
                    if now >= next_check:
                        state.tick()
                        next_check = now + interval
                    if now >= next_handshakes:
                        state.expire_handshakes()
                        self._expire_stalled_frames(now)
                        if not self._accepting and not self._stopping:
                            self._sel.register(self._listener, READ, "accept")
                            self._accepting = True
                        next_handshakes = now + HANDSHAKE_CHECK_S
                        if now >= next_sample:
                            self._sample()
                            next_sample = now + SAMPLE_S
                    due = min(next_check, next_handshakes)
                if outbox.frames or outbox.closing:
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

    def _sample(self):
        """Once a second: the state's counts and history; a new status
        document for the monitoring endpoint (built here, in the loop,
        then handed over whole: the endpoint's threads never read the
        state)."""
        try:
            self.state.sample()
            if self.monitoring is not None:
                self.monitoring.publish(self.state.status_document())
        except Exception:  # monitoring must never stop the Director
            log.exception("could not build the status document")

    def _client_output(self):
        """True while a ready client still has replies to be written."""
        peers = self.state.peers
        for conn in self._conns.values():
            peer = peers.get(conn.id)
            if conn.out and conn.closing is None and peer is not None \
                    and peer.ready and peer.role == p.ROLE_CLIENT:
                return True
        return False

    def _begin_drain(self):
        """Stop accepting; give running calls the grace period to finish."""
        try:
            self._sel.unregister(self._listener)
        except (KeyError, ValueError):
            pass
        self._accepting = False
        self._listener.close()
        self.state.drain()
        work = self.state.client_work()
        grace = self.config.shutdown_grace_s
        log.info("stopping: no new connections or calls; waiting up to %.1f s"
                 " for %d request(s) in flight", grace, work)
        return time.monotonic() + grace

    def _expire_stalled_frames(self, now):
        """Close connections that stopped sending in the middle of a frame,
        and those whose last frames their peer does not read."""
        limit = self.config.frame_timeout_s
        for conn in list(self._conns.values()):
            if conn.closing is not None and conn.sock is not None and \
                    now - conn.closing_since > CLOSING_LINGER_S:
                self._drop(conn, "%s (its peer did not read the last frames "
                                 "within %.0f s)" % (conn.closing,
                                                     CLOSING_LINGER_S))
                continue
            if conn.trusted and conn.sock is not None and \
                    conn.decoder.in_frame and now - conn.last_rx > limit:
                log.warning("peer %s:%s sent part of a frame, then nothing "
                            "for %.0f s (frame_timeout_s); closing it",
                            conn.addr[0], conn.addr[1], now - conn.last_rx)
                self._drop(conn, "frame timeout")

    def _drain_wake(self):
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def _close_all(self):
        if self.monitoring is not None:
            self.monitoring.close()
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
        conns = self._conns
        while True:
            try:
                sock, addr = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno not in NO_FD:
                    log.error("accept failed: %s", exc)
                    return
                oldest = self._admission.oldest()
                if oldest is not None:  # its descriptor is the new one's
                    self._shed([oldest], "out of file descriptors")
                    continue
                self._sel.unregister(self._listener)
                self._accepting = False
                quiet = self._accept_log.ready()
                if quiet is not None:
                    log.error("accept failed: %s; %d connections open, all "
                              "past their handshake; accepting again in %.2f "
                              "s (raise the file limit, ulimit -n, or lower "
                              "max_connections)%s", exc, len(conns),
                              ACCEPT_PAUSE_S, " (%d more times since the last"
                              " line)" % quiet if quiet else "")
                return
            peer_id = self._next_id
            self._next_id += 1
            shed = self._admission.admit(peer_id, addr[0], len(conns))
            if shed is None:
                if self._accept_log.ready() is not None:
                    log.warning("refused %s:%s: %d connections open "
                                "(max_connections)", addr[0], addr[1],
                                len(conns))
                sock.close()
                continue
            if shed:
                self._shed(shed, "too many connections in their handshake")
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            keep_alive(sock, user_timeout=False)  # see net/keepalive.py
            decoder = FrameDecoder(p.HANDSHAKE_MAX_FRAME_SIZE,
                                     expect_preamble=True)
            conn = Conn(peer_id, sock, addr, decoder, self._tls is not None)
            self._conns[peer_id] = conn
            self._sel.register(sock, READ, conn)
            self.state.connected(peer_id, addr)
            log.debug("connection %d from %s:%s", peer_id, addr[0], addr[1])

    def _shed(self, ids, why):
        """Close connections still in their handshake to make room."""
        for conn_id in ids:
            conn = self._conns.get(conn_id)
            if conn is not None:
                self._drop(conn, "closed to make room (%s)" % why)
            self._admission.done(conn_id)
        quiet = self._shed_log.ready()
        if quiet is not None:
            log.warning("closed %d connection(s) still in their handshake to "
                        "make room for new ones (%s; max_handshaking, "
                        "max_handshaking_per_addr)%s", len(ids), why,
                        " (and %d before, since the last line)" % quiet
                        if quiet else "")

    def _tls_step(self, conn):
        if not isinstance(conn.sock, ssl.SSLSocket):
            # A PyFaaS preamble in clear text gets a clear answer instead
            # of a reset.
            try:
                first = conn.first_byte()
            except OSError as exc:
                self._drop(conn, "receive failed: %s" % exc)
                return
            if first is None:
                return
            if first == "plain":
                log.warning("peer %s:%s speaks plain TCP to a TLS director",
                            conn.addr[0], conn.addr[1])
                self.state.error(conn.id, 0, "tls_required",
                                 "director %s requires TLS: set [security] "
                                 "tls = true (and tls_ca_file) on this peer"
                                 % self.state.name)
                self.state.close(conn.id, "plain TCP on a TLS port")
                conn.tls = conn.tls_handshake = False
                conn.closing = None
                self._apply_output()
                return
            if first == "closed":
                self._drop(conn, "connection closed")
                return
            self._sel.unregister(conn.sock)
            conn.sock = self._tls.wrap_socket(conn.sock, server_side=True,
                                              do_handshake_on_connect=False)
            self._sel.register(conn.sock, conn.events, conn)
        try:
            conn.sock.do_handshake()
        except ssl.SSLWantReadError:
            self._want(conn, READ)
            return
        except ssl.SSLWantWriteError:
            self._want(conn, WRITE)
            return
        except (ssl.SSLError, OSError) as exc:
            log.warning("TLS handshake with %s:%s failed: %s", conn.addr[0],
                        conn.addr[1], exc)
            self._drop(conn, "TLS handshake failed")
            return
        conn.tls_handshake = False
        self._want(conn, READ)
        self._read(conn)  # application bytes may already be decrypted

    def _want(self, conn, events):
        if events != conn.events:
            conn.events = events
            self._sel.modify(conn.sock, events, conn)

    # ----- writing -------------------------------------------------------------

    def _apply_output(self):
        """Write what the state queued: each peer's frames in one write,
        what a socket does not take now once select says it can; close the
        peers the state asked to close once their frames are written."""
        conns = self._conns
        outbox = self.state.outbox
        while outbox.frames or outbox.closing:
            frames, closing = outbox.take()
            for peer_id, parts in frames.items():
                conn = conns.get(peer_id)
                if conn is not None and conn.sock is not None:
                    self._flush(conn, parts)
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

    def _flush(self, conn, parts=None):
        """Write ``parts`` (or else what waits for ``conn``) as far as its
        socket takes them now; watch for writability while output waits;
        close it once a closing peer's output is out."""
        try:
            if parts is None:
                conn.flush()
            else:
                conn.write(parts)
        except OSError as exc:
            self._drop(conn, "send failed: %s" % exc)
            return
        if conn.tls_handshake:
            return  # (written once the handshake is done)
        if conn.out:
            if conn.out_bytes > self._max_output:
                self._drop(conn, "output buffer over %d bytes (peer not "
                                 "reading)" % self._max_output)
                return
        elif conn.closing is not None:
            self._drop(conn, conn.closing)
            return
        elif conn.events == READ:
            return  # the usual: all written, nothing to change
        self._want(conn, conn.wanted())

    def _read(self, conn):
        """Receive what ``conn`` sent and hand its events to the state."""
        decoder = conn.decoder
        state = self.state
        while conn.sock is not None and conn.closing is None:
            try:
                data = conn.sock.recv(LARGE_RECV_CHUNK if decoder.gathering
                                      else RECV_CHUNK)
            except WOULD_BLOCK:
                return
            except OSError as exc:
                self._drop(conn, "receive failed: %s" % exc)
                return
            decoder.feed(data)  # b"": the end of the stream
            try:
                while conn.closing is None:
                    event = decoder.next_event()
                    if event is NEED_DATA:
                        break
                    if event is CLOSED:
                        self._drop(conn, "connection closed")
                        return
                    state.received(conn.id, event)
                    if not conn.trusted:
                        self._trust(conn)
            except p.ProtocolError as exc:
                self._refuse(conn, exc)
                return
            except Exception:
                log.exception("error while handling peer %s:%s; dropping it",
                              conn.addr[0], conn.addr[1])
                self._drop(conn, "internal error")
                return
            if decoder.in_frame:
                # Part of a frame is held: it must not stall
                # (frame_timeout_s), and a Worker sending it is alive.
                conn.last_rx = time.monotonic()
                state.touch(conn.id)
            # A TLS socket may hold more decrypted bytes than select sees.
            if not (conn.tls and conn.sock is not None
                    and conn.sock.pending()):
                return

    def _trust(self, conn):
        """Once the state says the handshake is done, the peer may send
        frames up to max_frame_bytes."""
        peer = self.state.peers.get(conn.id)
        if peer is not None and peer.ready:
            conn.trusted = True
            conn.decoder.max_frame_size = self.config.max_frame_bytes
            self._admission.done(conn.id)

    def _refuse(self, conn, exc):
        """``conn`` sent bytes that are not PyFaaS: tell it why and close it."""
        log.warning("peer %s:%s sent bad bytes: %s; closing it",
                    conn.addr[0], conn.addr[1], exc)
        if conn.decoder.ended:  # it closed inside a frame: nobody to tell
            self._drop(conn, str(exc))
            return
        code = "frame_too_large" if isinstance(exc, p.FrameTooLarge) \
            else "protocol"
        self.state.error(conn.id, 0, code,
                         "director %s: %s" % (self.state.name, exc))
        self.state.close(conn.id, str(exc))

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
        self._admission.done(conn.id)
        if notify:
            self.state.disconnected(conn.id, reason)
