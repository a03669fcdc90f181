"""The listening TCP socket of a server.

Owns how PyFaaS listens: ``SO_REUSEADDR`` (a restarted Director can bind
the port its predecessor's connections still linger on), bind, listen,
and closing the socket again when any of that fails, so that the caller
only has to report why (address in use, permission, ...).
"""

import socket


def listening_socket(host, port, backlog=128):
    """A TCP socket bound to (host, port) and listening; OSError if not."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock
