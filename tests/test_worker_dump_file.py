"""Pure tests of the dump file (pyfaas/worker/persistence.py): atomic save, checked load."""

import hashlib
import os
import pickle
import struct

import pytest

from pyfaas.worker import persistence
from pyfaas.worker.persistence import HEADER, DumpError, load, save, set_aside

pytestmark = pytest.mark.timeout(30)

STATE = {"worker_id": "w-1", "functions": [("id", "name", None, b"code")],
         "cache": [("key", {"result": b"\x00" * 100})], "stats": {}}


@pytest.fixture
def dump(tmp_path):
    path = str(tmp_path / "worker.dump")
    save(path, STATE)
    return path


def read(path):
    with open(path, "rb") as fh:
        return fh.read()


def write(path, data):
    with open(path, "wb") as fh:
        fh.write(data)


def header(body, magic=persistence.MAGIC,
           version=persistence.FORMAT_VERSION, length=None, digest=None):
    return HEADER.pack(magic, version, b"\0" * 6,
                       len(body) if length is None else length,
                       digest or hashlib.sha256(body).digest())


# ----- save and load -------------------------------------------------------------

def test_save_then_load_round_trip(dump):
    assert load(dump) == STATE


def test_save_returns_the_file_size_and_writes_the_documented_header(dump):
    data = read(dump)
    magic, version, reserved, length, _ = HEADER.unpack_from(data)

    assert magic == b"PYFAASDP"
    assert version == persistence.FORMAT_VERSION
    assert reserved == b"\0" * 6
    assert length == len(data) - HEADER.size == len(data) - 56
    assert save(dump, STATE) == len(data)


def test_save_replaces_atomically_and_leaves_no_temporary_file(tmp_path, dump):
    save(dump, {"second": True})

    assert load(dump) == {"second": True}
    assert sorted(os.listdir(str(tmp_path))) == ["worker.dump"]


def test_save_creates_the_directory(tmp_path):
    path = str(tmp_path / "a" / "b" / "w.dump")

    save(path, {"x": 1})

    assert load(path) == {"x": 1}


def test_a_failed_save_keeps_the_previous_dump_and_removes_its_temp_file(
        tmp_path, dump):
    class Unpicklable:
        def __reduce__(self):
            raise TypeError("no pickling here")

    with pytest.raises(TypeError):
        save(dump, {"bad": Unpicklable()})

    assert load(dump) == STATE
    assert sorted(os.listdir(str(tmp_path))) == ["worker.dump"]


def test_a_missing_file_is_not_an_error(tmp_path):
    assert load(str(tmp_path / "nothing.dump")) is None


# ----- bad files: DumpError with a clear message ---------------------------------

def test_empty_file(dump):
    write(dump, b"")

    with pytest.raises(DumpError, match="empty"):
        load(dump)


def test_truncated_header(dump):
    write(dump, read(dump)[:20])

    with pytest.raises(DumpError, match=r"truncated \(20 bytes, header needs 56"):
        load(dump)


def test_truncated_body(dump):
    data = read(dump)
    write(dump, data[:-10])

    with pytest.raises(DumpError, match="truncated .*body %d of %d bytes"
                       % (len(data) - 10 - HEADER.size, len(data) - HEADER.size)):
        load(dump)


def test_extra_bytes_after_the_body(dump):
    write(dump, read(dump) + b"junk")

    with pytest.raises(DumpError):
        load(dump)


def test_random_bytes(dump):
    write(dump, bytes(range(256)) * 4)

    with pytest.raises(DumpError, match="not a PyFaaS dump file"):
        load(dump)


def test_a_plain_pickle_is_foreign(dump):
    write(dump, pickle.dumps(STATE))

    with pytest.raises(DumpError, match="not a PyFaaS dump file"):
        load(dump)


def test_a_plain_pickle_shorter_than_the_header_is_truncated(dump):
    write(dump, pickle.dumps({"a": 1}))

    with pytest.raises(DumpError, match="truncated"):
        load(dump)


def test_another_format_version(dump):
    data = bytearray(read(dump))
    struct.pack_into("!H", data, 8, persistence.FORMAT_VERSION + 1)
    write(dump, bytes(data))

    with pytest.raises(DumpError, match="version %d; this PyFaaS reads version %d"
                       % (persistence.FORMAT_VERSION + 1,
                          persistence.FORMAT_VERSION)):
        load(dump)


@pytest.mark.parametrize("where", [0, 1, -1])
def test_a_flipped_byte_in_the_body_fails_the_checksum(dump, where):
    data = bytearray(read(dump))
    index = HEADER.size + where if where >= 0 else len(data) + where
    data[index] ^= 0x01
    write(dump, bytes(data))

    with pytest.raises(DumpError, match="checksum mismatch"):
        load(dump)


def test_a_flipped_byte_in_the_stored_checksum(dump):
    data = bytearray(read(dump))
    data[30] ^= 0x80
    write(dump, bytes(data))

    with pytest.raises(DumpError, match="checksum mismatch"):
        load(dump)


def test_a_valid_file_whose_body_is_not_a_dict(dump):
    body = pickle.dumps([1, 2, 3])
    write(dump, header(body) + body)

    with pytest.raises(DumpError, match="list, not a dict"):
        load(dump)


def test_a_valid_file_whose_body_does_not_unpickle(dump):
    body = b"\x80\x05definitely not a pickle"
    write(dump, header(body) + body)

    with pytest.raises(DumpError, match="cannot be unpickled"):
        load(dump)


class CreatesAFile:
    """Unpickling it opens (creates) ``path`` for writing."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_nothing_is_unpickled_when_the_checksum_is_wrong(tmp_path, dump):
    witness = str(tmp_path / "unpickled-witness")
    body = pickle.dumps({"payload": CreatesAFile(witness)})
    good = header(body) + body
    bad = bytearray(good)
    bad[HEADER.size - 1] ^= 0xFF          # corrupt the stored checksum
    write(dump, bytes(bad))

    with pytest.raises(DumpError, match="checksum"):
        load(dump)
    assert not os.path.exists(witness)

    # The same body with its true checksum IS unpickled: the witness works.
    write(dump, good)
    state = load(dump)
    state["payload"].close()
    assert os.path.exists(witness)


def test_nothing_is_unpickled_for_another_version_or_a_truncated_body(
        tmp_path, dump):
    witness = str(tmp_path / "unpickled-witness")
    body = pickle.dumps({"payload": CreatesAFile(witness)})

    write(dump, header(body, version=persistence.FORMAT_VERSION + 7) + body)
    with pytest.raises(DumpError):
        load(dump)
    write(dump, header(body, length=len(body) + 1) + body)
    with pytest.raises(DumpError):
        load(dump)

    assert not os.path.exists(witness)


# ----- set_aside -----------------------------------------------------------------

def test_set_aside_renames_the_file(tmp_path, dump):
    write(dump, b"garbage")

    aside = set_aside(dump)

    assert aside is not None and aside.startswith(dump + ".bad-")
    assert not os.path.exists(dump)
    assert read(aside) == b"garbage"


def test_set_aside_twice_keeps_both_files(tmp_path, dump):
    write(dump, b"one")
    first = set_aside(dump)
    write(dump, b"two")
    second = set_aside(dump)

    assert first != second
    assert read(first) == b"one" and read(second) == b"two"


def test_set_aside_of_a_missing_file_returns_none(tmp_path):
    assert set_aside(str(tmp_path / "nothing.dump")) is None
