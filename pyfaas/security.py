"""The shared-token handshake and the choice of token. Pure apart from reading
the token file.

Owns where the cluster token comes from (``[security] token_file``, else
``$PYFAAS_TOKEN``), the mutual HMAC-SHA256 challenge-response, and the
protected-mode rule for the Director's address.

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
import ipaddress
import os
import secrets

from .errors import PyFaaSConfigError

TOKEN_ENV = "PYFAAS_TOKEN"
MIN_TOKEN_LENGTH = 16
NONCE_BYTES = 32
SCHEME = "hmac-sha256"


def load_token(token_file="", config_path="config"):
    """The cluster token as bytes, or None when none is configured.

    Raises:
        PyFaaSConfigError: the file cannot be read, or the token is shorter
            than MIN_TOKEN_LENGTH characters.
    """
    if token_file:
        try:
            with open(token_file, "r", encoding="utf-8") as fh:
                token = fh.readline().strip()
        except OSError as exc:
            raise PyFaaSConfigError("%s: [security] token_file: cannot read %s:"
                                    " %s" % (config_path, token_file,
                                             exc.strerror or exc))
        where = "%s: [security] token_file %s" % (config_path, token_file)
    else:
        token = os.environ.get(TOKEN_ENV, "").strip()
        if not token:
            return None
        where = "$%s" % TOKEN_ENV
    if len(token) < MIN_TOKEN_LENGTH:
        raise PyFaaSConfigError("%s: the token must have at least %d "
                                "characters (python -c 'import secrets; "
                                "print(secrets.token_hex(32))' makes one)"
                                % (where, MIN_TOKEN_LENGTH))
    return token.encode("utf-8")


def new_token():
    """A fresh random token (64 hex digits)."""
    return secrets.token_hex(32)


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


def is_loopback(host):
    """True for 127.0.0.0/8, ::1 and "localhost"."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
