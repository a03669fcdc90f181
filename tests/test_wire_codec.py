"""The wire codec (pyfaas/wire/): frames become bytes and bytes, split
anywhere, become the same frames again.

No sockets. The decoder is fed in every chunking we can think of: one byte at
a time, split at every offset of a stream, everything in one chunk, random
chunk sizes, and (with hypothesis) arbitrary bytes in arbitrary chunks. End
of stream is fed in too (``feed(b"")``): clean between frames, an error
inside one.
"""

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyfaas.wire import protocol as p
from pyfaas.wire.decoder import FrameDecoder

ALL_TYPES = sorted(p.TYPE_NAMES)
MAX_ID = 2 ** 64 - 1


def encode(type_, request_id=0, meta=None, payload=b"", flags=0):
    """One frame as one bytes object."""
    return b"".join(p.frame_parts(type_, request_id, meta, payload, flags))


def wire(frames):
    return b"".join(encode(f.type, f.request_id, f.meta_raw, f.payload,
                           f.flags) for f in frames)


def drain(decoder):
    """Every event the decoder can return now (up to NEED_DATA or CLOSED)."""
    events = []
    while True:
        event = decoder.next_event()
        if event is p.NEED_DATA or event is p.CLOSED:
            return events
        events.append(event)


def decode_all(chunks, decoder=None, **kwargs):
    """Feed ``chunks`` one by one, draining events after each, then the end
    of the stream, which must come between frames; return the events."""
    decoder = decoder or FrameDecoder(**kwargs)
    events = []
    for chunk in chunks:
        if chunk:  # (an empty chunk would say the stream ended)
            decoder.feed(chunk)
            events.extend(drain(decoder))
    decoder.feed(b"")
    assert decoder.next_event() is p.CLOSED
    return events


def split_at(data, *offsets):
    bounds = [0, *offsets, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


def random_chunks(data, rng, max_size):
    chunks, pos = [], 0
    while pos < len(data):
        size = rng.randint(1, max_size)
        chunks.append(data[pos:pos + size])
        pos += size
    return chunks


def as_tuple(event):
    if isinstance(event, p.Preamble):
        return ("preamble", event.version, event.role)
    return (event.type, event.flags, event.request_id, event.meta_raw,
            event.payload)


SAMPLE_FRAMES = [
    p.Frame(p.CALL, 7, b'{"f":"abc"}', b"\x80\x04args", p.FLAG_PICKLED),
    p.Frame(p.HEARTBEAT, 0, b'{"inflight":0}', b""),
    p.Frame(p.OK, MAX_ID, b"", b"result bytes"),
    p.Frame(p.PING, 1, b"", b""),
]
SAMPLE_STREAM = wire(SAMPLE_FRAMES)
PREAMBLE = p.encode_preamble(p.ROLE_WORKER)

metas = st.one_of(st.none(), st.dictionaries(
    st.text(max_size=8), st.one_of(st.none(), st.booleans(), st.integers(),
                                   st.text(max_size=20)), max_size=4))
frame_strategy = st.builds(
    p.Frame,
    type=st.sampled_from(ALL_TYPES),
    request_id=st.integers(min_value=0, max_value=MAX_ID),
    meta_raw=metas.map(p.encode_meta),
    payload=st.binary(max_size=300),
    flags=st.sampled_from([0, p.FLAG_PICKLED]))


# ----- encoding --------------------------------------------------------------

@settings(max_examples=100, deadline=None)
@given(type_=st.sampled_from(ALL_TYPES), meta=metas,
       payload=st.one_of(st.binary(max_size=300),
                         st.binary(min_size=p.SMALL_WRITE,
                                   max_size=p.SMALL_WRITE + 10)),
       rid=st.integers(min_value=0, max_value=MAX_ID),
       flags=st.sampled_from([0, p.FLAG_PICKLED]))
def test_any_frame_round_trips(type_, meta, payload, rid, flags):
    [frame] = decode_all([encode(type_, rid, meta, payload, flags)])
    assert frame == p.Frame(type_, rid, p.encode_meta(meta), payload, flags)
    assert frame.meta() == (meta or {})


def test_header_layout_matches_the_documented_offsets():
    data = encode(p.CALL, 0x0102030405060708, {"a": 1}, b"xyz",
                  p.FLAG_PICKLED)
    meta = b'{"a":1}'
    assert data[0:4] == (12 + len(meta) + 3).to_bytes(4, "big")
    assert data[4] == p.CALL and data[5] == p.FLAG_PICKLED
    assert data[6:8] == len(meta).to_bytes(2, "big")
    assert data[8:16] == bytes(range(1, 9))
    assert data[16:16 + len(meta)] == meta and data[16 + len(meta):] == b"xyz"


def test_a_large_payload_is_not_copied_and_a_small_frame_is_one_piece():
    payload = memoryview(b"x" * p.SMALL_WRITE)
    parts = p.frame_parts(p.CALL, 1, None, payload)
    assert len(parts) == 2 and parts[1] is payload
    small = p.frame_parts(p.CALL, 1, None, b"x" * (p.SMALL_WRITE - 1))
    assert len(small) == 1
    assert len(p.frame_parts(p.PING, 1)) == 1


def test_preamble_layout():
    assert p.encode_preamble(p.ROLE_CLIENT) == b"PYFS\x00\x01\x01\x00"
    [pre] = decode_all([p.encode_preamble(p.ROLE_WORKER)],
                       expect_preamble=True)
    assert (pre.version, pre.role) == (p.PROTOCOL_VERSION, p.ROLE_WORKER)


def test_meta_over_65535_bytes_is_refused_at_encode_time():
    big = {"k": "x" * 0xFFFF}
    with pytest.raises(ValueError, match="65535"):
        p.frame_parts(p.CALL, 1, big)
    exact = b"x" * 0xFFFF  # already-encoded meta at the limit is fine
    assert len(p.frame_parts(p.CALL, 1, exact)[0]) == 16 + 0xFFFF


def test_type_names_cover_every_message_type():
    assert p.TYPE_NAMES[p.CALL] == "CALL"
    assert p.TYPE_NAMES[p.REGISTER_WORKER] == "REGISTER_WORKER"
    assert len(set(p.TYPE_NAMES.values())) == len(p.TYPE_NAMES)


# ----- chunking --------------------------------------------------------------

def test_one_byte_at_a_time():
    data = SAMPLE_STREAM
    events = decode_all([data[i:i + 1] for i in range(len(data))])
    assert events == SAMPLE_FRAMES


def test_every_split_point_of_a_stream():
    for i in range(len(SAMPLE_STREAM) + 1):
        for j in range(i, len(SAMPLE_STREAM) + 1, 7):
            events = decode_all(split_at(SAMPLE_STREAM, i, j))
            assert events == SAMPLE_FRAMES, (i, j)


def _decode_with_preamble(chunks):
    return [as_tuple(e) for e in decode_all(chunks, expect_preamble=True)]


EXPECTED_WITH_PREAMBLE = [("preamble", 1, p.ROLE_WORKER)] + [
    as_tuple(f) for f in SAMPLE_FRAMES]
# Splitting after 5, 6 or 7 bytes of the preamble trips the early magic check.


def test_every_split_point_after_a_preamble():
    stream = PREAMBLE + SAMPLE_STREAM
    for i in [*range(0, 5), *range(8, len(stream) + 1)]:
        assert _decode_with_preamble(split_at(stream, i)) == \
            EXPECTED_WITH_PREAMBLE, i


@pytest.mark.parametrize("i", [5, 6, 7])
def test_split_inside_the_preamble_version_field(i):
    stream = PREAMBLE + SAMPLE_STREAM
    assert _decode_with_preamble(split_at(stream, i)) == EXPECTED_WITH_PREAMBLE


def test_preamble_one_byte_at_a_time():
    stream = PREAMBLE + SAMPLE_STREAM
    chunks = [stream[i:i + 1] for i in range(len(stream))]
    assert _decode_with_preamble(chunks) == EXPECTED_WITH_PREAMBLE


def test_many_frames_in_one_chunk():
    frames = [p.Frame(p.CALL, i, b'{"f":"%d"}' % i, bytes([i % 256]) * i)
              for i in range(500)]
    decoder = FrameDecoder()
    assert decode_all([wire(frames)], decoder) == frames
    assert decoder.buffered == 0


def test_large_payload_in_random_chunks():
    rng = random.Random(1234)
    payload = rng.getrandbits(8 << 20).to_bytes(1 << 20, "big")
    data = encode(p.OK, 99, {"t": 1}, payload) + encode(p.PING)
    for max_chunk in (1000, 65536, 300000):
        events = decode_all(random_chunks(data, rng, max_chunk))
        assert [e.type for e in events] == [p.OK, p.PING]
        assert events[0].payload == payload and events[0].request_id == 99


# ----- limits and malformed input --------------------------------------------

@pytest.mark.parametrize("announced", [1025, 0xFFFFFFFF])
def test_oversized_frame_is_refused_before_its_body_arrives(announced):
    decoder = FrameDecoder(max_frame_size=1024)
    header = announced.to_bytes(4, "big")
    decoder.feed(header[:3])
    assert decoder.next_event() is p.NEED_DATA
    decoder.feed(header[3:])
    with pytest.raises(p.FrameTooLarge, match=str(announced)):
        decoder.next_event()
    assert decoder.buffered == 4  # the announced size was never allocated


def test_frame_at_the_limit_is_accepted():
    decoder = FrameDecoder(max_frame_size=12 + 100)
    [frame] = decode_all([encode(p.OK, 1, None, b"x" * 100)], decoder)
    assert frame.payload == b"x" * 100
    with pytest.raises(p.FrameTooLarge):
        decode_all([encode(p.OK, 1, None, b"x" * 101)],
                   FrameDecoder(max_frame_size=112))


def test_frame_too_large_is_a_protocol_error():
    assert issubclass(p.FrameTooLarge, p.ProtocolError)


@pytest.mark.parametrize("body_len", [0, 1, 11])
def test_body_shorter_than_the_fixed_header_is_an_error(body_len):
    decoder = FrameDecoder()
    decoder.feed(body_len.to_bytes(4, "big"))
    with pytest.raises(p.ProtocolError, match="under the minimum"):
        decoder.next_event()


def test_meta_length_larger_than_the_body_is_an_error():
    data = bytearray(encode(p.CALL, 1, None, b"abc"))
    data[6:8] = (4).to_bytes(2, "big")  # meta of 4 bytes in a 3-byte remainder
    with pytest.raises(p.ProtocolError, match="meta length"):
        decode_all([bytes(data)])


def test_http_request_is_refused_at_its_first_byte():
    decoder = FrameDecoder(expect_preamble=True)
    decoder.feed(b"G")
    with pytest.raises(p.ProtocolError, match="bad magic"):
        decoder.next_event()
    with pytest.raises(p.ProtocolError, match="bad magic"):
        decode_all([b"GET / HTTP/1.1\r\n\r\n"], expect_preamble=True)


def test_preamble_with_another_version_is_returned_for_the_state_to_judge():
    [pre] = decode_all([p.encode_preamble(p.ROLE_CLIENT, version=9)],
                       expect_preamble=True)
    assert (pre.version, pre.role) == (9, p.ROLE_CLIENT)


# ----- end of stream ---------------------------------------------------------

def test_end_of_stream_between_frames_is_a_clean_close():
    decoder = FrameDecoder(expect_preamble=True)
    decoder.feed(b"")  # nothing received at all
    assert decoder.next_event() is p.CLOSED
    decoder = FrameDecoder(expect_preamble=True)
    decoder.feed(PREAMBLE + SAMPLE_STREAM)
    decoder.feed(b"")  # what came before the end still comes out first
    assert [as_tuple(e) for e in drain(decoder)] == EXPECTED_WITH_PREAMBLE
    assert decoder.next_event() is p.CLOSED
    assert decoder.next_event() is p.CLOSED  # and it stays closed


@pytest.mark.parametrize("cut", [1, 4, 10, 16, len(SAMPLE_STREAM) - 1])
def test_end_of_stream_inside_a_frame_is_an_error(cut):
    decoder = FrameDecoder()
    decoder.feed(SAMPLE_STREAM[:cut])
    drain(decoder)
    assert decoder.in_frame
    decoder.feed(b"")
    with pytest.raises(p.ProtocolError, match="inside a frame"):
        decoder.next_event()


@pytest.mark.parametrize("preallocate", [False, True])
def test_end_of_stream_inside_a_large_body_is_an_error(preallocate):
    decoder = FrameDecoder(preallocate=preallocate)
    decoder.feed(encode(p.OK, 1, None, b"x" * 200000)[:100000])
    assert decoder.next_event() is p.NEED_DATA and decoder.gathering
    decoder.feed(b"")
    with pytest.raises(p.ProtocolError, match="inside a frame"):
        decoder.next_event()


def test_end_of_stream_inside_the_preamble_is_an_error():
    decoder = FrameDecoder(expect_preamble=True)
    decoder.feed(b"PY")
    assert decoder.next_event() is p.NEED_DATA
    decoder.feed(b"")
    with pytest.raises(p.ProtocolError, match="inside a frame"):
        decoder.next_event()


def test_bytes_after_the_end_of_stream_are_refused():
    decoder = FrameDecoder()
    decoder.feed(b"")
    with pytest.raises(p.ProtocolError, match="after the end"):
        decoder.feed(b"x")


@pytest.mark.parametrize("raw", [b"{not json", b"\xff\xfe", b"[1, 2]", b'"s"',
                                 b"42", b"null"])
def test_meta_that_is_not_a_json_object_is_a_protocol_error(raw):
    frame = p.Frame(p.CALL, 1, raw)
    with pytest.raises(p.ProtocolError):
        frame.meta()


def test_empty_meta_is_an_empty_dict():
    assert p.Frame(p.CALL).meta() == {}


# ----- properties ------------------------------------------------------------

chunkings = st.lists(st.integers(min_value=1, max_value=64), min_size=1)


def _chunk(data, sizes):
    chunks, pos, i = [], 0, 0
    while pos < len(data):
        size = sizes[i % len(sizes)]
        chunks.append(data[pos:pos + size])
        pos, i = pos + size, i + 1
    return chunks


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=400), sizes=chunkings,
       expect_preamble=st.booleans(),
       max_frame_size=st.sampled_from([12, 40, 1000]))
def test_arbitrary_bytes_yield_events_or_protocol_errors(
        data, sizes, expect_preamble, max_frame_size):
    decoder = FrameDecoder(max_frame_size, expect_preamble=expect_preamble)
    try:
        for chunk in _chunk(data, sizes):
            decoder.feed(chunk)
            for event in drain(decoder):
                assert isinstance(event, (p.Preamble, p.Frame))
                if isinstance(event, p.Frame):
                    assert len(event.meta_raw) + len(event.payload) <= \
                        max_frame_size - 12
            # An unfinished frame is never more than its length prefix and
            # an allowed body; an unfinished preamble is under 8 bytes.
            assert decoder.buffered < max(8, 4 + max_frame_size)
    except p.ProtocolError:
        pass


@settings(max_examples=200, deadline=None)
@given(frames=st.lists(frame_strategy, max_size=8), sizes=chunkings)
def test_any_frames_round_trip_in_any_chunking(frames, sizes):
    decoded = decode_all(_chunk(wire(frames), sizes))
    assert decoded == frames
    assert [f.meta() for f in decoded] == [json.loads(f.meta_raw or b"{}")
                                          for f in frames]


def _outcome(chunks, max_frame_size):
    """The events of a stream fed in ``chunks``, then its end, and the class
    of the error that stopped them, if any."""
    decoder = FrameDecoder(max_frame_size)
    events = []
    try:
        for chunk in [*chunks, b""]:
            decoder.feed(chunk)
            event = decoder.next_event()
            while event is not p.NEED_DATA and event is not p.CLOSED:
                events.append(event)
                event = decoder.next_event()
        events.append(event)
    except p.ProtocolError as exc:
        events.append(type(exc))
    return events


@settings(max_examples=300, deadline=None)
@given(frames=st.lists(frame_strategy, max_size=6),
       garbage=st.binary(max_size=40),
       sizes=st.lists(st.integers(min_value=1, max_value=700), min_size=1),
       max_frame_size=st.sampled_from([12, 100, 1000, 65536]),
       kinds=st.lists(st.sampled_from(["bytes", "bytearray", "memoryview"]),
                      min_size=1))
def test_any_chunking_gives_what_one_chunk_gives(frames, garbage, sizes,
                                                 max_frame_size, kinds):
    # Whole frames of a chunk are parsed where they are, a frame's unfinished
    # end waits in a buffer: the frames, the error and the close must not
    # depend on how the bytes arrived, nor on the type of the chunks.
    data = wire(frames) + garbage
    convert = {"bytes": bytes, "bytearray": bytearray,
               "memoryview": lambda b: memoryview(bytearray(b))}
    chunks = [convert[kinds[i % len(kinds)]](chunk)
              for i, chunk in enumerate(_chunk(data, sizes))]
    assert _outcome(chunks, max_frame_size) == _outcome([data],
                                                        max_frame_size)


# ----- preallocated large bodies (client and Worker side) ----------------------

def _large_frames(sizes):
    return [p.Frame(p.OK, i + 1, b'{"n":%d}' % i,
                    bytes([i % 251]) * size, p.FLAG_PICKLED)
            for i, size in enumerate(sizes)]


def _receive(decoder, data, step):
    """Feed ``data`` like Connection.recv_frame: into recv_target() when the
    decoder offers one, else as bytes chunks of ``step``."""
    events, pos = [], 0
    while pos < len(data):
        target = decoder.recv_target()
        if target is not None:
            n = min(step, len(target), len(data) - pos)
            target[:n] = data[pos:pos + n]
            decoder.wrote(n)
            target.release()
        else:
            n = min(step, len(data) - pos)
            decoder.feed(data[pos:pos + n])
        pos += n
        events.extend(iter(decoder.next_event, p.NEED_DATA))
    return events


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(min_value=0, max_value=200000), min_size=1,
                      max_size=4),
       step=st.sampled_from([1000, 65536, 262144, 1 << 20]))
def test_preallocated_bodies_decode_the_same_as_gathered_ones(sizes, step):
    frames = _large_frames(sizes)
    decoder = FrameDecoder(preallocate=True)
    assert _receive(decoder, wire(frames), step) == frames
    decoder.feed(b"")
    assert decoder.next_event() is p.CLOSED


def test_a_body_buffer_is_reused_only_once_nothing_refers_to_its_frame():
    decoder = FrameDecoder(preallocate=True)
    first, second, third = _large_frames([300000, 200000, 150000])

    [got1] = _receive(decoder, wire([first]), 65536)
    kept = got1.payload[1000:2000]  # a slice of the payload, alive
    del got1
    [got2] = _receive(decoder, wire([second]), 65536)
    # A view of the first body is still alive: its buffer was not reused.
    assert bytes(kept) == first.payload[1000:2000]
    assert got2 == second and kept.obj is not got2.payload.obj
    buffer2 = id(got2.payload.obj)  # the decoder keeps it alive
    del kept, got2
    [got3] = _receive(decoder, wire([third]), 65536)
    # Nothing refers to the second frame any more: its buffer serves again.
    assert got3 == third and id(got3.payload.obj) == buffer2

