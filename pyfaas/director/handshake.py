"""The Director's side of the connection handshake.

A mixin of :class:`pyfaas.director.state.DirectorState`: the answer to a
peer's preamble (version check, HELLO with a fresh nonce when a cluster
token is set), the check of its AUTH proof (see :mod:`pyfaas.security`),
and the deadline by which a new connection must have finished all this.
Pure, like the state it extends.
"""

import logging

from ..wire import protocol as p
from ..wire import auth

log = logging.getLogger(__name__)


class Handshake:
    """Handshake handlers; mixed into DirectorState."""

    def expire_handshakes(self):
        """Close connections that did not finish the handshake in time."""
        now = self.clock()
        for peer in list(self.peers.values()):
            if not peer.ready and not peer.closing and now > peer.deadline:
                log.warning("peer %s:%s did not finish the handshake within "
                            "%.1f s; closing it", peer.addr[0], peer.addr[1],
                            self.handshake_timeout)
                self.close(peer.id, "handshake timeout")

    def _on_preamble(self, peer, pre):
        if pre.version != p.PROTOCOL_VERSION:
            self.error(peer.id, 0, "version",
                       "director %s speaks PyFaaS protocol version %d; this "
                       "peer sent version %d. Install matching PyFaaS versions."
                       % (self.name, p.PROTOCOL_VERSION, pre.version))
            self.close(peer.id, "protocol version %d" % pre.version)
            return
        if pre.role not in p.ROLE_NAMES:
            self.error(peer.id, 0, "protocol", "unknown role %d" % pre.role)
            self.close(peer.id, "unknown role %d" % pre.role)
            return
        peer.role = pre.role
        hello = {"protocol": p.PROTOCOL_VERSION, "director": self.name,
                 "auth": "none", "max_frame": self.max_frame}
        if self.token is None:
            peer.ready = True
        else:
            peer.nonce = auth.new_nonce()
            hello.update(auth=auth.SCHEME, nonce=peer.nonce.hex())
        self.send(peer.id, p.HELLO, 0, hello)

    def _on_auth(self, peer, frame):
        role = p.ROLE_NAMES[peer.role]
        try:
            meta = frame.meta()
            peer_nonce = bytes.fromhex(meta["nonce"])
            mac = bytes.fromhex(meta["mac"])
            if len(peer_nonce) != auth.NONCE_BYTES:
                raise ValueError("nonce length")
        except (KeyError, TypeError, ValueError, p.ProtocolError):
            peer_nonce, mac = b"", b""
        expected = auth.peer_proof(self.token, role, peer.nonce,
                                       peer_nonce)
        if not peer_nonce or not auth.check(expected, mac):
            log.warning("refused %s %s:%s: wrong cluster token", role,
                        peer.addr[0], peer.addr[1])
            self.error(peer.id, frame.request_id, "auth_rejected",
                       "director %s refused the cluster token: it does not "
                       "match" % self.name)
            self.close(peer.id, "authentication failed")
            return
        peer.ready = True
        self.send(peer.id, p.AUTH, frame.request_id, {
            "mac": auth.director_proof(self.token, role, peer.nonce,
                                           peer_nonce).hex()})
