"""The incremental frame decoder: chunks of bytes in, whole frames out.

Owns :class:`FrameDecoder`, which turns bytes received in chunks split
anywhere into the Preamble and Frames of :mod:`pyfaas.wire.protocol`,
checking each frame's announced size before buffering its body. End of
stream is fed in too (``feed(b"")``), as in h11's ``receive_data(b"")``:
between frames it is a clean close (:data:`~pyfaas.wire.protocol.CLOSED`),
inside one it is an error. Pure like the protocol module: no I/O, no
``socket``, ``selectors`` or ``threading``, and nothing is unpickled.
"""

from .protocol import (BODY_FIXED, CLOSED, DEFAULT_MAX_FRAME_SIZE, HEADER,
                       HEADER_SIZE, LARGE_BODY, MAGIC, NEED_DATA, PREAMBLE,
                       SPARE_MAX, Frame, FrameTooLarge, Preamble,
                       ProtocolError)


# What the decoder is in the middle of (FrameDecoder._state).
_PREAMBLE = "preamble"    # the 8 bytes a connection starts with
_FRAMES = "frames"        # frames, parsed where they lie in the bytes held
_LARGE = "large"          # a large frame's body, gathered in _large


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

    ``feed(b"")`` says the stream ended; ``next_event()`` then returns
    CLOSED once every whole frame before it has been returned, or raises
    ProtocolError if the stream ended inside a frame.

    Received bytes are parsed where they are: a chunk fed while nothing is
    held is kept as it is (no copy), and only the unfinished end of a chunk
    is copied into a buffer to wait for the rest.

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
        max_frame_size: largest body length accepted (see
            :mod:`pyfaas.wire.protocol`).
        expect_preamble: the stream starts with an 8-byte preamble (the
            Director's side of a connection).
        preallocate: see above.
    """

    def __init__(self, max_frame_size=DEFAULT_MAX_FRAME_SIZE,
                 expect_preamble=False, preallocate=False):
        self.max_frame_size = max_frame_size
        self.preallocate = preallocate
        # Bytes not parsed yet are self._data[self._pos:]: the chunk as it
        # was fed (bytes), or a bytearray once a chunk ended mid-frame.
        self._data = b""
        self._pos = 0
        self._eof = False
        self._state = _PREAMBLE if expect_preamble else _FRAMES
        self._spare = None        # the last preallocated body, for reuse
        self._large = None        # a large body: its chunks, or its buffer
        self._large_got = 0
        self._large_need = 0
        self._large_head = None   # (type, flags, meta_len, request_id)

    def feed(self, data):
        """Add received bytes (any chunking); ``b""`` means end of stream.

        Raises:
            ProtocolError: bytes fed after the end of stream.
        """
        held = self._data
        if self._pos == len(held) and self._state is not _LARGE and data \
                and not self._eof:  # nothing held: parse the chunk in place
            self._data = data if data.__class__ is bytes else bytes(data)
            self._pos = 0
            return
        if not data:
            self._eof = True
            return
        if self._eof:
            raise ProtocolError("bytes fed after the end of the stream")
        if self._state is _LARGE:
            large = self._large
            n = min(self._large_need - self._large_got, len(data))
            if n:
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
        if self._pos == len(held):  # nothing held: parse the chunk in place
            self._data = data if data.__class__ is bytes else bytes(data)
            self._pos = 0
        elif held.__class__ is bytes:  # the unparsed end of a chunk
            self._data = bytearray(memoryview(held)[self._pos:])
            self._data += data
            self._pos = 0
        else:
            held += data

    def recv_target(self):
        """Where the next bytes of a preallocated large body go (a
        ``memoryview`` to receive into, then call :meth:`wrote`), or None."""
        large = self._large
        if large.__class__ is bytearray and self._pos == len(self._data):
            return memoryview(large)[self._large_got:self._large_need]
        return None

    def wrote(self, n):
        """``n`` bytes were received into :meth:`recv_target`."""
        self._large_got += n

    @property
    def buffered(self):
        """Bytes received but not yet returned as an event."""
        held = len(self._data) - self._pos
        if self._state is _LARGE:
            held += HEADER_SIZE + self._large_got
        return held

    @property
    def ended(self):
        """True once the end of the stream was fed."""
        return self._eof

    @property
    def gathering(self):
        """True while the body of a large frame is being gathered."""
        return self._state is _LARGE

    @property
    def in_frame(self):
        """True when some bytes of an unfinished preamble or frame are held."""
        return self._pos != len(self._data) or self._state is _LARGE

    def next_event(self):
        """Return the next Preamble or Frame, NEED_DATA, or CLOSED.

        Raises:
            ProtocolError: bad magic, a body length under 12, a bad meta
                length, or the end of the stream inside a frame.
            FrameTooLarge: a body length over ``max_frame_size``.
        """
        data = self._data
        pos = self._pos
        size = len(data)
        if size - pos < HEADER_SIZE or self._state is not _FRAMES:
            if pos == size and self._state is _FRAMES and not self._eof:
                return NEED_DATA  # the usual: every frame received was taken
            return self._partial()
        body_len, type_, flags, meta_len, request_id = HEADER.unpack_from(
            data, pos)
        end = pos + 4 + body_len
        if end > size or not \
                BODY_FIXED + meta_len <= body_len <= self.max_frame_size:
            return self._partial()
        start = pos + HEADER_SIZE
        if data.__class__ is bytes:
            meta_raw = data[start:start + meta_len]
            payload = data[start + meta_len:end]
        else:
            # Copy out through a memoryview: slicing the bytearray itself
            # makes an extra copy.
            with memoryview(data) as view:
                meta_raw = bytes(view[start:start + meta_len])
                payload = bytes(view[start + meta_len:end])
        if end == size:
            self._data = b""
            self._pos = 0
        else:
            self._consume(end)
        return Frame(type_, request_id, meta_raw, payload, flags)

    def _partial(self):
        """next_event() for all but a whole, valid frame in the held bytes:
        a preamble, a large body, a bad header, too few bytes, the end."""
        data, pos = self._data, self._pos
        avail = len(data) - pos
        if self._state is _LARGE:
            return self._large_frame()
        if self._state is _PREAMBLE:
            return self._preamble(data, pos, avail)
        if avail >= 4:  # refuse a bad length before the rest comes
            body_len = int.from_bytes(data[pos:pos + 4], "big")
            meta_len = 0
            if avail >= HEADER_SIZE:
                meta_len = int.from_bytes(data[pos + 6:pos + 8], "big")
            self._check(body_len, meta_len)
            if avail >= HEADER_SIZE and body_len >= LARGE_BODY:
                _, type_, flags, _, request_id = HEADER.unpack_from(data, pos)
                self._start_large(body_len, type_, flags, meta_len,
                                  request_id)
                return self._large_frame()
        return self._ended(avail)

    def _check(self, body_len, meta_len):
        if body_len > self.max_frame_size:
            raise FrameTooLarge("frame of %d bytes announced; the limit is %d"
                                % (body_len, self.max_frame_size))
        if body_len < BODY_FIXED:
            raise ProtocolError("frame body length %d is under the minimum %d"
                                % (body_len, BODY_FIXED))
        if meta_len > body_len - BODY_FIXED:
            raise ProtocolError("meta length %d exceeds the frame body"
                                % meta_len)

    def _ended(self, avail):
        """NEED_DATA; at the end of the stream CLOSED, or an error when
        ``avail`` bytes of a frame are held."""
        if not self._eof:
            return NEED_DATA
        if avail:
            raise ProtocolError("connection closed inside a frame (%d bytes "
                                "of it received)" % avail)
        return CLOSED

    def _preamble(self, data, pos, avail):
        if avail < PREAMBLE.size:
            # Check the magic early so garbage fails fast, not at byte 8.
            head = bytes(data[pos:pos + min(avail, len(MAGIC))])
            if head != MAGIC[:len(head)]:
                raise ProtocolError("not a PyFaaS peer: bad magic %r" % head)
            return self._ended(avail)
        magic, version, role, _ = PREAMBLE.unpack_from(data, pos)
        if magic != MAGIC:
            raise ProtocolError("not a PyFaaS peer: bad magic %r" % magic)
        self._state = _FRAMES
        self._consume(pos + PREAMBLE.size)
        return Preamble(version, role)

    def _consume(self, end):
        """The bytes before ``end`` are parsed."""
        data = self._data
        if end == len(data):
            self._data = b""
            self._pos = 0
        elif data.__class__ is bytearray and end > 65536 and \
                end * 2 > len(data):
            # Compact once the parsed prefix dominates, so the buffer stays
            # small without shifting bytes on every frame.
            del data[:end]
            self._pos = 0
        else:
            self._pos = end

    def _start_large(self, body_len, type_, flags, meta_len, request_id):
        self._large_head = (type_, flags, meta_len, request_id)
        self._large_need = body_len - BODY_FIXED
        data, pos = self._data, self._pos
        with memoryview(data) as view:
            first = view[pos + HEADER_SIZE:]
            if self.preallocate:
                self._large = self._body_buffer(self._large_need)
                self._large[:len(first)] = first
            else:
                self._large = [bytes(first)]
            self._large_got = len(first)
            del first
        self._data = b""
        self._pos = 0
        self._state = _LARGE

    def _body_buffer(self, need):
        spare = self._spare
        if spare is not None and len(spare) >= need and _unviewed(spare):
            return spare
        body = bytearray(need)
        self._spare = body if need <= SPARE_MAX else None
        return body

    def _large_frame(self):
        if self._large_got < self._large_need:
            if self._eof:
                raise ProtocolError(
                    "connection closed inside a frame (%d bytes of it "
                    "received)" % self.buffered)
            return NEED_DATA
        chunks, need = self._large, self._large_need
        type_, flags, meta_len, request_id = self._large_head
        self._large, self._large_got, self._large_head = None, 0, None
        self._state = _FRAMES
        if chunks.__class__ is bytearray:  # perhaps a larger spare buffer
            view = memoryview(chunks)[:need]
        else:
            view = memoryview(chunks[0] if len(chunks) == 1
                              else b"".join(chunks))
        return Frame(type_, request_id, bytes(view[:meta_len]),
                     view[meta_len:], flags)
