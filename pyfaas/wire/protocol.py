"""The PyFaaS wire format: a pure, incremental codec.

Owns the byte layout of the connection preamble and of frames, the message
type numbers, and their encoding (:func:`frame_parts`, the one way to put
a frame into bytes); the incremental decoder that turns chunks of bytes,
split anywhere, into whole frames is :mod:`pyfaas.wire.decoder`. Neither
does any I/O or imports ``socket``, ``selectors`` or ``threading``; they
never unpickle anything (payloads are opaque bytes). ``docs/protocol.md``
is the long form of this docstring.

Preamble, sent once by the connecting peer (client or Worker), 8 bytes::

    offset size field
    0      4    magic b"PYFS"
    4      2    protocol version, uint16 big-endian (this module: 1)
    6      1    role: 1 = client, 2 = worker
    7      1    reserved, 0

Frame, in both directions after the preamble, all integers big-endian::

    offset   size      field
    0        4         body length N: the bytes that follow this field
                       (N >= 12; N <= the receiver's max frame size)
    4        1         message type (see the constants below)
    5        1         flags (bit 0: FLAG_PICKLED payload; others 0)
    6        2         meta length M
    8        8         request id (0 = not tied to a request)
    16       M         meta: a UTF-8 JSON object (routing data), or empty
    16+M     N-12-M    payload: opaque bytes (cloudpickle data or JSON)

The decoder checks the body length against its limit as soon as the 4 length
bytes are in, before it buffers the body, so an oversized frame is refused
without allocating it.
"""

import json
import struct

MAGIC = b"PYFS"
PROTOCOL_VERSION = 1

ROLE_CLIENT = 1
ROLE_WORKER = 2
ROLE_NAMES = {ROLE_CLIENT: "client", ROLE_WORKER: "worker"}

PREAMBLE = struct.Struct("!4sHBB")
HEADER = struct.Struct("!IBBHQ")
HEADER_SIZE = HEADER.size            # 16
BODY_FIXED = HEADER_SIZE - 4         # bytes of the header counted in N

DEFAULT_MAX_FRAME_SIZE = 64 * 1024 * 1024
# Before a peer has finished the handshake it may only send frames this big.
HANDSHAKE_MAX_FRAME_SIZE = 4096
MAX_META_SIZE = 0xFFFF

FLAG_PICKLED = 0x01

# Bodies this large are gathered in a buffer of their own (see FrameDecoder).
LARGE_BODY = 64 * 1024
# Pieces that make less than this together are joined into one before they
# are written (one system call, and cheaper than a scatter list: measured
# 3-4 us a send); a larger payload is written from where it is, never
# copied. frame_parts applies it to one frame; the Director's output and
# net.connection to what they write at once.
SMALL_WRITE = 16 * 1024
SPARE_MAX = 16 * 1024 * 1024     # largest body buffer a decoder keeps

# Message types. Requests and replies share one numbering; a reply is OK or
# ERROR carrying the request id of what it answers.
HELLO = 0x01          # director -> peer: handshake answer (meta: version, auth)
AUTH = 0x02           # reserved for the authentication step of the handshake
OK = 0x03             # reply: success (meta and payload depend on the request)
ERROR = 0x04          # reply or connection error (meta: code, message, ...)
REGISTER_WORKER = 0x10  # worker -> director: id, pool size, functions held
WELCOME = 0x11        # director -> worker: accepted (meta: worker_id, want)
HEARTBEAT = 0x12      # worker -> director: still alive (meta: in-flight count)
ANNOUNCE = 0x13       # worker -> director: a function it holds (payload: code)
DEPLOY = 0x20         # client -> director -> worker: register a function
UNDEPLOY = 0x21       # client -> director -> worker: unregister a function
LIST = 0x22           # client -> director: registered functions
CALL = 0x30           # client -> director -> worker: invoke (payload: args)
CANCEL = 0x31         # client -> director -> worker: give up on a call
CALL_MANY = 0x32      # client -> director: several calls of one function
WORKERS = 0x40        # client -> director: ids of live Workers
WORKER_INFO = 0x41    # client -> director -> worker: worker details
KILL_WORKER = 0x42    # client -> director -> worker: stop gracefully
PING = 0x43           # client -> director: liveness and cluster summary
STATS = 0x44          # client -> director -> workers: statistics
CACHE_DUMP = 0x45     # client -> director -> worker: cache contents
STATUS = 0x46         # client -> director: the status document (JSON)
CHAIN = 0x50          # client -> director: run a workflow

TYPE_NAMES = {
    value: name for name, value in list(globals().items())
    if name.isupper() and isinstance(value, int) and name not in (
        "PROTOCOL_VERSION", "ROLE_CLIENT", "ROLE_WORKER", "HEADER_SIZE",
        "DEFAULT_MAX_FRAME_SIZE", "HANDSHAKE_MAX_FRAME_SIZE", "MAX_META_SIZE",
        "FLAG_PICKLED", "BODY_FIXED", "LARGE_BODY", "SPARE_MAX",
        "SMALL_WRITE")
}


class ProtocolError(Exception):
    """Bytes that are not a valid PyFaaS stream. Close the connection."""


class FrameTooLarge(ProtocolError):
    """A frame announced more bytes than the receiver accepts."""


class NeedData:
    """Sentinel type: the decoder needs more bytes for the next event."""

    def __repr__(self):
        return "NEED_DATA"


NEED_DATA = NeedData()


class Closed:
    """Sentinel type: the stream ended cleanly, between two frames."""

    def __repr__(self):
        return "CLOSED"


CLOSED = Closed()


class Preamble:
    """The connecting peer's preamble: protocol version and role."""

    __slots__ = ("version", "role")

    def __init__(self, version, role):
        self.version = version
        self.role = role

    def __repr__(self):
        return "Preamble(version=%d, role=%d)" % (self.version, self.role)


class Frame:
    """One decoded frame. ``meta_raw`` and ``payload`` are bytes."""

    __slots__ = ("type", "flags", "request_id", "meta_raw", "payload")

    def __init__(self, type, request_id=0, meta_raw=b"", payload=b"", flags=0):
        self.type = type
        self.flags = flags
        self.request_id = request_id
        self.meta_raw = meta_raw
        self.payload = payload

    def meta(self):
        """The meta JSON object as a dict ({} when empty).

        Raises:
            ProtocolError: the meta bytes are not a UTF-8 JSON object.
        """
        return decode_meta(self.meta_raw)

    def __eq__(self, other):
        return isinstance(other, Frame) and (
            self.type, self.flags, self.request_id, bytes(self.meta_raw),
            bytes(self.payload)) == (
            other.type, other.flags, other.request_id, bytes(other.meta_raw),
            bytes(other.payload))

    def __repr__(self):
        return "Frame(%s, id=%d, meta=%r, payload=%d bytes)" % (
            TYPE_NAMES.get(self.type, hex(self.type)), self.request_id,
            bytes(self.meta_raw[:80]), len(self.payload))


def encode_meta(meta):
    """dict (or None, or already-encoded bytes) -> meta bytes."""
    if meta is None:
        return b""
    if isinstance(meta, (bytes, bytearray)):
        return bytes(meta)
    return json.dumps(meta, separators=(",", ":")).encode("utf-8")


def decode_meta(raw):
    """meta bytes -> dict. Raises ProtocolError on anything but a JSON object."""
    if not raw:
        return {}
    try:
        value = json.loads(bytes(raw).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError("frame meta is not valid UTF-8 JSON: %s" % exc)
    if not isinstance(value, dict):
        raise ProtocolError("frame meta is not a JSON object")
    return value


def encode_preamble(role, version=PROTOCOL_VERSION):
    """The 8 bytes a client or Worker sends first."""
    return PREAMBLE.pack(MAGIC, version, role, 0)


def frame_parts(type, request_id=0, meta=None, payload=b"", flags=0):
    """Encode a frame as a list of byte pieces to write in order.

    A frame with a payload under SMALL_WRITE bytes is one piece; a larger
    payload stays a piece of its own, not copied (``[head, payload]``),
    for scatter writes and output buffers that take several pieces.

    Args:
        type: the message type.
        request_id: the request id (0: not tied to a request).
        meta: a dict, None, or meta already encoded (bytes).
        payload: bytes, bytearray or memoryview.
        flags: FLAG_PICKLED or 0.

    Raises:
        ValueError: the meta is longer than 65535 bytes.
    """
    if meta.__class__ is not bytes:
        meta = encode_meta(meta)
    meta_len = len(meta)
    if meta_len > MAX_META_SIZE:
        raise ValueError("frame meta is %d bytes; the limit is %d"
                         % (meta_len, MAX_META_SIZE))
    size = len(payload)
    head = HEADER.pack(BODY_FIXED + meta_len + size, type, flags, meta_len,
                       request_id)
    if size < SMALL_WRITE:
        return [head + meta + payload]
    return [head + meta, payload]

