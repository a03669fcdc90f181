"""Proof of the cluster token: the handshake's HMAC challenge-response.

Pure: bytes in, bytes out; no I/O. The Director (:mod:`pyfaas.director`)
and the connecting side (:mod:`pyfaas.net.connection`) both use it.

Handshake (after the preamble; see docs/protocol.md):

1. The Director's HELLO carries ``auth = "hmac-sha256"`` and a fresh 32-byte
   ``nonce`` (hex).
2. The peer answers an AUTH frame with its own fresh ``nonce`` and
   ``mac = HMAC(token, "pyfaas-auth-1|peer|<role>|" + director nonce + peer nonce)``.
3. The Director checks it in constant time and answers AUTH with
   ``mac = HMAC(token, "pyfaas-auth-1|director|<role>|" + director nonce + peer nonce)``,
   which the peer checks: both sides prove they hold the token, and a
   recorded exchange cannot be replayed (the other side's nonce is new).

Nothing else is read from a peer before this completes.
"""

import hashlib
import hmac
import secrets

NONCE_BYTES = 32
SCHEME = "hmac-sha256"


def new_nonce():
    return secrets.token_bytes(NONCE_BYTES)


def _mac(token, side, role, director_nonce, peer_nonce):
    msg = ("pyfaas-auth-1|%s|%s|" % (side, role)).encode("ascii")
    return hmac.new(token, msg + director_nonce + peer_nonce,
                    hashlib.sha256).digest()


def peer_proof(token, role, director_nonce, peer_nonce):
    """What a client or Worker sends to prove it holds the token."""
    return _mac(token, "peer", role, director_nonce, peer_nonce)


def director_proof(token, role, director_nonce, peer_nonce):
    """What the Director sends back to prove it holds the token too."""
    return _mac(token, "director", role, director_nonce, peer_nonce)


def check(expected, received):
    """Constant-time comparison of two MACs."""
    return hmac.compare_digest(expected, received)
