"""Blocking connections to a Director, for Workers and clients.

- :mod:`.connection`: connect, handshake, send and receive whole frames with
  deadlines; the one place where socket errors become PyFaaS errors.
- :mod:`.tls`: TLS contexts, and the locked TLS socket several threads share.
"""
