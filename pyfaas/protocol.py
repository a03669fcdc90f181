"""The PyFaaS wire format: a pure, incremental codec.

Owns the byte layout of the connection preamble and of frames, the message
type numbers, and an incremental decoder that turns chunks of bytes, split
anywhere, into whole frames. It does no I/O and imports no ``socket``,
``selectors`` or ``threading``; it never unpickles anything (payloads are
opaque bytes). ``docs/protocol.md`` is the long form of this docstring.

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
CHAIN = 0x50          # client -> director: run a workflow

TYPE_NAMES = {
    value: name for name, value in list(globals().items())
    if name.isupper() and isinstance(value, int) and name not in (
        "PROTOCOL_VERSION", "ROLE_CLIENT", "ROLE_WORKER", "HEADER_SIZE",
        "DEFAULT_MAX_FRAME_SIZE", "HANDSHAKE_MAX_FRAME_SIZE", "MAX_META_SIZE",
        "FLAG_PICKLED", "BODY_FIXED", "LARGE_BODY", "SPARE_MAX")
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
    """Encode a frame as ``[header_and_meta, payload]`` without copying payload.

    Suits scatter writes (``socket.sendmsg``) and output buffers that take
    several pieces. ``payload`` may be bytes, bytearray or memoryview.

    Raises:
        ValueError: the meta is longer than 65535 bytes.
    """
    meta_raw = meta if meta.__class__ is bytes else encode_meta(meta)
    if len(meta_raw) > MAX_META_SIZE:
        raise ValueError("frame meta is %d bytes; the limit is %d"
                         % (len(meta_raw), MAX_META_SIZE))
    head = HEADER.pack(BODY_FIXED + len(meta_raw) + len(payload), type, flags,
                       len(meta_raw), request_id) + meta_raw
    if payload:
        return [head, payload]
    return [head]


def encode_frame(type, request_id=0, meta=None, payload=b"", flags=0):
    """Encode a frame to one bytes object. See :func:`frame_parts`."""
    return b"".join(frame_parts(type, request_id, meta, payload, flags))


def _unviewed(buf):
    """True if no ``memoryview`` of the bytearray ``buf`` is alive.

    Resizing a bytearray that is viewed raises BufferError; shrinking it by
    one byte and growing it back reallocates nothing. (Counting references
    instead depends on the interpreter's version.)
    """
    try:
        last = buf.pop()
    except BufferError:
        return False
    buf.append(last)
    return True


class FrameDecoder:
    """Incremental decoder: ``feed(data)``, then ``next_event()`` until NEED_DATA.

    A frame whose body is at least ``LARGE_BODY`` bytes is gathered as the
    list of chunks that arrive (memory grows with what was received, never
    with what a header announces), joined once when complete, and its
    payload is returned as a ``memoryview`` of the joined bytes; smaller
    frames' payloads are ``bytes``.

    With ``preallocate`` (a peer that is trusted with memory: the Director,
    seen from a client or Worker), a large body gets one buffer of the
    announced size instead, which the caller may receive into directly
    (:meth:`recv_target`, :meth:`wrote`): no chunk is kept and nothing is
    joined. The buffer (up to SPARE_MAX bytes) is kept and used again for a
    later large frame once no view of it is alive any more (frames only
    ever hand out views of it): fresh memory costs a page fault per 4 KiB
    page.

    Args:
        max_frame_size: largest body length accepted (see module docstring).
        expect_preamble: the stream starts with an 8-byte preamble (the
            Director's side of a connection).
        preallocate: see above.
    """

    def __init__(self, max_frame_size=DEFAULT_MAX_FRAME_SIZE,
                 expect_preamble=False, preallocate=False):
        self.max_frame_size = max_frame_size
        self.preallocate = preallocate
        self._spare = None        # the last preallocated body, for reuse
        self._buf = bytearray()
        self._pos = 0
        # A chunk fed while nothing was held is parsed in place (no copy into
        # _buf); what is left of it moves to _buf when it ends mid-frame.
        self._chunk = None
        self._cpos = 0
        self._want_preamble = expect_preamble
        self._large = None        # chunks of a large frame's body so far
        self._large_got = 0
        self._large_need = 0
        self._large_head = None   # (type, flags, meta_len, request_id)

    def feed(self, data):
        """Append received bytes (any chunking)."""
        if self._chunk is not None:
            self._hold_chunk()
        elif not self._buf and self._large is None and \
                isinstance(data, bytes):
            self._chunk = data
            self._cpos = 0
            return
        large = self._large
        if large is not None:
            room = self._large_need - self._large_got
            if room:
                n = min(room, len(data))
                if large.__class__ is bytearray:
                    got = self._large_got
                    large[got:got + n] = memoryview(data)[:n]
                else:
                    large.append(bytes(data) if n == len(data)
                                 else bytes(memoryview(data)[:n]))
                self._large_got += n
                if n == len(data):
                    return
                data = memoryview(data)[n:]
        self._buf += data

    def recv_target(self):
        """Where the next bytes of a preallocated large body go (a
        ``memoryview`` to receive into, then call :meth:`wrote`), or None."""
        large = self._large
        if large.__class__ is bytearray and self._chunk is None \
                and not self._buf:
            return memoryview(large)[self._large_got:self._large_need]
        return None

    def wrote(self, n):
        """``n`` bytes were received into :meth:`recv_target`."""
        self._large_got += n

    @property
    def buffered(self):
        """Bytes received but not yet returned as an event."""
        held = 0 if self._chunk is None else len(self._chunk) - self._cpos
        return held + len(self._buf) - self._pos + self._large_got + (
            HEADER_SIZE if self._large is not None else 0)

    def _hold_chunk(self):
        """Move the unparsed rest of the in-place chunk to _buf."""
        chunk, pos = self._chunk, self._cpos
        self._chunk = None
        if pos < len(chunk):
            self._buf += memoryview(chunk)[pos:]

    def _chunk_frame(self):
        """The next whole frame of the in-place chunk, or None."""
        chunk, pos = self._chunk, self._cpos
        if len(chunk) - pos < HEADER_SIZE:
            return None
        body_len, type_, flags, meta_len, request_id = \
            HEADER.unpack_from(chunk, pos)
        end = pos + 4 + body_len
        if end > len(chunk) or body_len > self.max_frame_size or \
                meta_len > body_len - BODY_FIXED:
            return None  # incomplete or bad: the general path decides
        start = pos + HEADER_SIZE
        if end == len(chunk):
            self._chunk = None
        else:
            self._cpos = end
        return Frame(type_, request_id, chunk[start:start + meta_len],
                     chunk[start + meta_len:end], flags)

    def frames(self, data):
        """Feed ``data``; return ``(frames, holding)``.

        When nothing was held before and ``data`` is ``bytes``, the whole
        frames it starts with are parsed in place and returned as a list
        (the quickest way through the decoder). Otherwise, or from the first
        frame that is not whole or looks wrong, the bytes are kept for
        :meth:`next_event`, and ``holding`` is True: call it until
        NEED_DATA. No frame is skipped or reordered either way.
        """
        if self._chunk is not None or self._buf or self._large is not None \
                or self._want_preamble or data.__class__ is not bytes:
            self.feed(data)
            return [], True
        end_of_data = len(data)
        limit = self.max_frame_size
        if end_of_data >= HEADER_SIZE:  # first: exactly one frame, the usual
            body_len, type_, flags, meta_len, request_id = \
                HEADER.unpack_from(data)
            if body_len + 4 == end_of_data and body_len <= limit and \
                    meta_len <= body_len - BODY_FIXED:
                return [Frame(type_, request_id,
                              data[HEADER_SIZE:HEADER_SIZE + meta_len],
                              data[HEADER_SIZE + meta_len:], flags)], False
        frames = []
        pos = 0
        while end_of_data - pos >= HEADER_SIZE:
            body_len, type_, flags, meta_len, request_id = \
                HEADER.unpack_from(data, pos)
            end = pos + 4 + body_len
            if end > end_of_data or body_len > limit or \
                    meta_len > body_len - BODY_FIXED:
                break  # incomplete or bad: next_event() decides
            start = pos + HEADER_SIZE
            frames.append(Frame(type_, request_id,
                                data[start:start + meta_len],
                                data[start + meta_len:end], flags))
            pos = end
        if pos == end_of_data:
            return frames, False
        self._chunk = data
        self._cpos = pos
        return frames, True

    @property
    def gathering(self):
        """True while the body of a large frame is being gathered."""
        return self._large is not None

    @property
    def in_frame(self):
        """True when some bytes of an unfinished preamble or frame are held."""
        return self.buffered > 0

    def next_event(self):
        """Return the next Preamble or Frame, or NEED_DATA.

        Raises:
            ProtocolError: bad magic, a body length under 12, bad meta length.
            FrameTooLarge: a body length over ``max_frame_size``.
        """
        if self._chunk is not None:
            if not self._want_preamble:
                frame = self._chunk_frame()
                if frame is not None:
                    return frame
            self._hold_chunk()
        if self._large is not None:
            return self._large_frame()
        buf, pos = self._buf, self._pos
        avail = len(buf) - pos
        if self._want_preamble:
            if avail < PREAMBLE.size:
                # Check the magic early so garbage fails fast, not at byte 8.
                head = bytes(buf[pos:pos + min(avail, len(MAGIC))])
                if head != MAGIC[:len(head)]:
                    raise ProtocolError("not a PyFaaS peer: bad magic %r"
                                        % head)
                return NEED_DATA
            magic, version, role, _ = PREAMBLE.unpack_from(buf, pos)
            if magic != MAGIC:
                raise ProtocolError("not a PyFaaS peer: bad magic %r" % magic)
            self._want_preamble = False
            self._consume(PREAMBLE.size)
            return Preamble(version, role)
        if avail < 4:
            return NEED_DATA
        body_len = int.from_bytes(buf[pos:pos + 4], "big")
        if body_len > self.max_frame_size:
            raise FrameTooLarge("frame of %d bytes announced; the limit is %d"
                                % (body_len, self.max_frame_size))
        if body_len < BODY_FIXED:
            raise ProtocolError("frame body length %d is under the minimum %d"
                                % (body_len, BODY_FIXED))
        if avail < 4 + body_len:
            if body_len >= LARGE_BODY and avail >= HEADER_SIZE:
                self._start_large(body_len)
                return self._large_frame()
            return NEED_DATA
        _, type_, flags, meta_len, request_id = HEADER.unpack_from(buf, pos)
        if meta_len > body_len - BODY_FIXED:
            raise ProtocolError("meta length %d exceeds the frame body"
                                % meta_len)
        start = pos + HEADER_SIZE
        end = pos + 4 + body_len
        # Copy out through a memoryview: slicing the bytearray itself makes
        # an extra copy.
        with memoryview(buf) as view:
            meta_raw = bytes(view[start:start + meta_len])
            payload = bytes(view[start + meta_len:end])
        self._consume(4 + body_len)
        return Frame(type_, request_id, meta_raw, payload, flags)

    def _start_large(self, body_len):
        buf, pos = self._buf, self._pos
        _, type_, flags, meta_len, request_id = HEADER.unpack_from(buf, pos)
        if meta_len > body_len - BODY_FIXED:
            raise ProtocolError("meta length %d exceeds the frame body"
                                % meta_len)
        self._large_head = (type_, flags, meta_len, request_id)
        self._large_need = body_len - BODY_FIXED
        with memoryview(buf) as view:
            if self.preallocate:
                first = view[pos + HEADER_SIZE:]
                self._large = self._body_buffer(self._large_need)
                self._large[:len(first)] = first
            else:
                first = bytes(view[pos + HEADER_SIZE:])
                self._large = [first]
            self._large_got = len(first)
            del first
        self._buf.clear()
        self._pos = 0

    def _body_buffer(self, need):
        spare = self._spare
        if spare is not None and len(spare) >= need and _unviewed(spare):
            return spare
        body = bytearray(need)
        self._spare = body if need <= SPARE_MAX else None
        return body

    def _large_frame(self):
        if self._large_got < self._large_need:
            return NEED_DATA
        chunks, need = self._large, self._large_need
        type_, flags, meta_len, request_id = self._large_head
        self._large, self._large_got, self._large_head = None, 0, None
        if chunks.__class__ is bytearray:  # perhaps a larger spare buffer
            view = memoryview(chunks)[:need]
        else:
            view = memoryview(chunks[0] if len(chunks) == 1
                              else b"".join(chunks))
        return Frame(type_, request_id, bytes(view[:meta_len]),
                     view[meta_len:], flags)

    def _consume(self, n):
        self._pos += n
        # Compact once the consumed prefix dominates, so the buffer stays
        # small without shifting bytes on every frame.
        if self._pos == len(self._buf):
            self._buf.clear()
            self._pos = 0
        elif self._pos > 65536 and self._pos * 2 > len(self._buf):
            del self._buf[:self._pos]
            self._pos = 0

    def check_eof(self):
        """Call at end of stream. Raises ProtocolError if it ended mid-frame."""
        if self.in_frame:
            raise ProtocolError("connection closed inside a frame (%d bytes "
                                "of it received)" % self.buffered)
