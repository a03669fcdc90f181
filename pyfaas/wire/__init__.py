"""The PyFaaS wire protocol: bytes in, frames out, and back. No I/O.

- :mod:`.protocol`: the preamble and frame layout, message types, encoding.
- :mod:`.decoder`: the incremental decoder (chunks of any size in, frames out).
- :mod:`.auth`: the token proofs exchanged in the handshake.

Nothing in this package imports ``socket``, ``selectors``, ``ssl`` or
``threading`` (tests/test_layout.py checks it), so all of it is tested on
bytes alone. The long form is docs/protocol.md.
"""
