"""How long the kernel keeps a TCP connection whose peer went silent.

Owns the keepalive settings of every PyFaaS connection. A peer that
vanishes from the network (a machine cut off or powered down: no FIN, no
RST) leaves a connection that looks established for as long as nothing
is sent on it, and for about 15 minutes of retransmissions (Linux's
``tcp_retries2``) once something is. PyFaaS's own liveness rules detect
silent peers sooner where they apply (a Director evicts a silent Worker, a
Worker leaves a silent Director: docs/failures.md); these settings bound
the rest, as on a client's idle connection, or a Director's connection to
a client that vanished:

- keepalive: a connection idle for KEEPALIVE_IDLE_S is probed every
  KEEPALIVE_INTERVAL_S; after KEEPALIVE_PROBES probes without an answer
  the kernel closes it (about 15 s after the last packet heard);
- user timeout (Linux, clients and Workers only): data sent and not
  acknowledged for USER_TIMEOUT_S closes the connection, instead of
  minutes of retransmissions whose growing intervals would also delay the
  first packet after the network comes back. The Director does not set
  it: it would also cut off a client that merely stops reading for that
  long (a zero window), which the Director leaves to its output limit.

Where the platform lacks an option, the others still apply.
"""

import socket

KEEPALIVE_IDLE_S = 5
KEEPALIVE_INTERVAL_S = 5
KEEPALIVE_PROBES = 2
USER_TIMEOUT_S = 15


def keep_alive(sock, user_timeout=True):
    """Apply the settings above to a connected TCP socket.

    Args:
        sock: the socket (plain, before any TLS wrapping).
        user_timeout: also set TCP_USER_TIMEOUT (clients and Workers).
    """
    options = [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]
    # TCP_KEEPIDLE is Linux's name; macOS calls it TCP_KEEPALIVE.
    idle = getattr(socket, "TCP_KEEPIDLE", None) or \
        getattr(socket, "TCP_KEEPALIVE", None)
    for name, value in ((idle, KEEPALIVE_IDLE_S),
                        (getattr(socket, "TCP_KEEPINTVL", None),
                         KEEPALIVE_INTERVAL_S),
                        (getattr(socket, "TCP_KEEPCNT", None),
                         KEEPALIVE_PROBES),
                        (getattr(socket, "TCP_USER_TIMEOUT", None)
                         if user_timeout else None, USER_TIMEOUT_S * 1000)):
        if name is not None:
            options.append((socket.IPPROTO_TCP, name, value))
    for level, name, value in options:
        try:
            sock.setsockopt(level, name, value)
        except OSError:  # not supported here: the others still help
            pass
