"""Sockets: blocking connections to a Director (Workers, clients), the
Director's listening socket, and what applies to every connection.

- :mod:`.connection`: connect, handshake, send and receive whole frames with
  deadlines; the one place where socket errors become PyFaaS errors.
- :mod:`.listener`: the listening socket of a server (the Director's).
- :mod:`.keepalive`: how long the kernel keeps a connection to a silent peer.
- :mod:`.tls`: TLS contexts, and the locked TLS socket several threads share.
"""
