"""Pure tests of WorkerCore's two ways of running a call.

``run_plain`` is the short way the Worker takes for the usual call (no cache
asked for or in use, not a workflow step, no isolation, no time limit); it
must answer exactly as ``run_call`` does, statistics included. Each case
runs the same call both ways on two fresh cores and compares.
"""

import pytest

from pyfaas.wire import protocol as p
from pyfaas import serialization as ser
from pyfaas.config import load_worker_config
from pyfaas.tools.local_cluster import worker_sections, write_toml
from pyfaas.ids import function_id
from pyfaas.worker.core import WorkerCore


def double(x):
    return 2 * x


def fails(x):
    raise ValueError("no %r" % (x,))


def big(x):
    return b"x" * x


FUNCTIONS = {"double": double, "fails": fails, "big": big}


def _core(tmp_path, name, **behavior):
    path = write_toml(str(tmp_path / (name + ".toml")),
                      worker_sections(str(tmp_path), name, 40000, **behavior))
    core = WorkerCore(load_worker_config(path), "w1")
    for fname, fn in FUNCTIONS.items():
        code = ser.dumps_function(fn)
        core.load_function(function_id(code, fname), fname, None, code)
    return core


def _fid(core, name):
    [fid] = [f.id for f in core.functions.values() if f.name == name]
    return fid


def _both(tmp_path, name, args, meta_extra=None, cache_size=16):
    """The replies of run_call and run_plain, and the statistics after."""
    out = []
    for way in ("call", "plain"):
        core = _core(tmp_path, way, cache_size=cache_size)
        meta = dict(meta_extra or {}, f=_fid(core, name))
        frame = p.Frame(p.CALL, 7, p.encode_meta(meta),
                        ser.dumps((args, {})), p.FLAG_PICKLED)
        assert core.plain(meta) and core.cache_idle()
        if way == "call":
            reply = core.run_call(frame, meta)
        else:
            reply = core.run_plain(frame, meta["f"],
                                   core.result_limit_for(meta))
        figures = core.stats.snapshot()[meta["f"]]
        for key in ("last_call", "total_s", "min_s", "max_s", "mean_s",
                    "p50_s", "p95_s", "recent_s"):  # times differ
            figures.pop(key, None)
        out.append((reply, figures))
    return out


def _same(replies):
    (call, call_stats), (plain, plain_stats) = replies
    assert call[0] == plain[0] and call[3] == plain[3]  # type and flags
    if call[0] == p.OK:
        assert call[1] == plain[1] and bytes(call[2]) == bytes(plain[2])
    else:
        for key in ("code", "message", "type", "remote_message"):
            assert call[1].get(key) == plain[1].get(key), key
    assert call_stats == plain_stats
    return plain


def test_a_result(tmp_path):
    reply = _same(_both(tmp_path, "double", (21,)))
    assert ser.loads(reply[2]) == 42


def test_a_function_that_raises(tmp_path):
    reply = _same(_both(tmp_path, "fails", (3,)))
    assert reply[1]["code"] == "execution" and "no 3" in reply[1]["message"]


def test_arguments_that_do_not_fit(tmp_path):
    reply = _same(_both(tmp_path, "double", (1, 2)))
    assert reply[1]["code"] in ("parameter_mismatch", "execution")


def test_a_result_over_the_callers_limit(tmp_path):
    reply = _same(_both(tmp_path, "big", (5000,), {"max": 1024}))
    assert reply[1]["code"] == "serialization"


@pytest.mark.parametrize("cache_size", [0, 16])
def test_statistics_count_the_same_with_and_without_a_cache(tmp_path,
                                                            cache_size):
    _same(_both(tmp_path, "double", (1,), cache_size=cache_size))


def test_what_plain_admits(tmp_path):
    core = _core(tmp_path, "w")
    assert core.plain({"f": "x", "timeout": 2.0})  # the Worker checks limits
    assert not core.plain({"f": "x", "cache": True})
    assert not core.plain({"f": "x", "refs": [], "sizes": []})
    assert core.cache_idle()
    frame = p.Frame(p.CALL, 1, b"", ser.dumps(((4,), {})), p.FLAG_PICKLED)
    fid = _fid(core, "double")
    core.run_call(frame, {"f": fid, "cache": True})  # stores a result
    assert not core.cache_idle()
