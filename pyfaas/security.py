"""The cluster token and the protected-mode rule.

Owns where the cluster token comes from (``[security] token_file``, else
``$PYFAAS_TOKEN``), making a new one, and the rule that a Director on a
non-loopback address needs one. The challenge-response that proves a peer
holds the token is :mod:`pyfaas.wire.auth`.
"""

import ipaddress
import os
import secrets

from .errors import PyFaaSConfigError

TOKEN_ENV = "PYFAAS_TOKEN"
MIN_TOKEN_LENGTH = 16


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


def is_loopback(host):
    """True for 127.0.0.0/8, ::1 and "localhost"."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
