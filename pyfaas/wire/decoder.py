"""The incremental frame decoder: chunks of bytes in, whole frames out.

Owns :class:`FrameDecoder`, which turns bytes received in chunks split
anywhere into the Preamble and Frames of :mod:`pyfaas.wire.protocol`, checking
each frame's announced size before buffering its body. Pure like the
protocol module: no I/O, no ``socket``, ``selectors`` or ``threading``, and
nothing is unpickled.
"""

from .protocol import (BODY_FIXED, DEFAULT_MAX_FRAME_SIZE, HEADER,
                       HEADER_SIZE, LARGE_BODY, MAGIC, NEED_DATA, PREAMBLE,
                       SPARE_MAX, Frame, FrameTooLarge, Preamble,
                       ProtocolError)


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


def whole_frame(data, max_frame_size):
    """The Frame ``data`` (bytes) is, when it is exactly one whole, valid
    frame; else None (it is then for :class:`FrameDecoder`).

    The usual receive holds one small frame: clients, Workers and the
    Director try this first when their decoder holds nothing.
    """
    size = len(data)
    if size < HEADER_SIZE:
        return None
    body_len, type_, flags, meta_len, request_id = HEADER.unpack_from(data)
    if body_len + 4 != size or body_len > max_frame_size or \
            meta_len > body_len - BODY_FIXED:
        return None
    end = HEADER_SIZE + meta_len
    return Frame(type_, request_id, data[HEADER_SIZE:end], data[end:], flags)


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
        limit = self.max_frame_size
        frame = whole_frame(data, limit)  # first: exactly one, the usual
        if frame is not None:
            return [frame], False
        end_of_data = len(data)
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
