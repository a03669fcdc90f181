"""The Director's side of the connection handshake.

Owns :class:`Handshake`: the answer to a peer's preamble (version check,
HELLO with a fresh nonce when a cluster token is set), the check of its
AUTH proof (see :mod:`pyfaas.wire.auth`), and the deadline by which a new
connection must have finished all this. Pure: it queues frames in the
state's :class:`~pyfaas.director.outbox.Outbox`.
"""

import logging

from ..wire import auth
from ..wire import protocol as p

log = logging.getLogger(__name__)


class Handshake:
    """Answers peers until they are ready.

    Args:
        peers: the state's ``{peer id: Peer}``.
        outbox: where answers go.
        name: ``"host:port"`` of the Director, for messages.
        token: the cluster token (bytes), or None for no authentication.
        max_frame: the largest frame the Director takes (told in HELLO).
        timeout: seconds a new connection has to finish the handshake.
        clock: ``time.monotonic`` or a test's fake.
    """

    def __init__(self, peers, outbox, name, token, max_frame, timeout, clock):
        self.peers = peers
        self.outbox = outbox
        self.name = name
        self.token = token
        self.max_frame = max_frame
        self.timeout = timeout
        self.clock = clock

    def start(self, peer):
        """A new connection: it must be ready before its deadline."""
        peer.deadline = self.clock() + self.timeout

    def expire(self):
        """Close connections that did not finish the handshake in time."""
        now = self.clock()
        late = [peer for peer in self.peers.values()
                if not peer.ready and not peer.closing and now > peer.deadline]
        for peer in late:
            self.outbox.close(peer.id, "handshake timeout")
        if late:  # one line a round: a peer can open many at will
            log.warning("%d connection(s) did not finish the handshake within "
                        "%.1f s (first: %s:%s); closing them", len(late),
                        self.timeout, late[0].addr[0], late[0].addr[1])

    def preamble(self, peer, pre):
        """The first bytes of a connection: who it is, which version."""
        if pre.version != p.PROTOCOL_VERSION:
            self.outbox.error(
                peer.id, 0, "version",
                "director %s speaks PyFaaS protocol version %d; this peer "
                "sent version %d. Install matching PyFaaS versions."
                % (self.name, p.PROTOCOL_VERSION, pre.version))
            self.outbox.close(peer.id, "protocol version %d" % pre.version)
            return
        if pre.role not in p.ROLE_NAMES:
            self.outbox.error(peer.id, 0, "protocol",
                              "unknown role %d" % pre.role)
            self.outbox.close(peer.id, "unknown role %d" % pre.role)
            return
        peer.role = pre.role
        hello = {"protocol": p.PROTOCOL_VERSION, "director": self.name,
                 "auth": "none", "max_frame": self.max_frame}
        if self.token is None:
            peer.ready = True
        else:
            peer.nonce = auth.new_nonce()
            hello.update(auth=auth.SCHEME, nonce=peer.nonce.hex())
        self.outbox.send(peer.id, p.HELLO, 0, hello)

    def auth(self, peer, frame):
        """The peer's proof that it holds the token; ours goes back."""
        role = p.ROLE_NAMES[peer.role]
        try:
            meta = frame.meta()
            peer_nonce = bytes.fromhex(meta["nonce"])
            mac = bytes.fromhex(meta["mac"])
            if len(peer_nonce) != auth.NONCE_BYTES:
                raise ValueError("nonce length")
        except (KeyError, TypeError, ValueError, p.ProtocolError):
            peer_nonce, mac = b"", b""
        expected = auth.peer_proof(self.token, role, peer.nonce, peer_nonce)
        if not peer_nonce or not auth.check(expected, mac):
            log.warning("refused %s %s:%s: wrong cluster token", role,
                        peer.addr[0], peer.addr[1])
            self.outbox.error(peer.id, frame.request_id, "auth_rejected",
                              "director %s refused the cluster token: it "
                              "does not match" % self.name)
            self.outbox.close(peer.id, "authentication failed")
            return
        peer.ready = True
        self.outbox.send(peer.id, p.AUTH, frame.request_id, {
            "mac": auth.director_proof(self.token, role, peer.nonce,
                                       peer_nonce).hex()})
