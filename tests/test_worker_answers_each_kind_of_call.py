"""What a Worker answers to each kind of call, and what it counts.

Pure: a :class:`~pyfaas.worker.core.WorkerCore` built from a Worker TOML
file runs CALL frames (no sockets, no threads) and returns the reply as
``(type, meta, payload, flags)``.
"""

import pytest

from pyfaas import serialization as ser
from pyfaas import workflow as wfl
from pyfaas.config import load_worker_config
from pyfaas.ids import function_id
from pyfaas.tools.local_cluster import worker_sections, write_toml
from pyfaas.wire import protocol as p
from pyfaas.worker.core import WorkerCore


def double(x):
    return 2 * x


def fails(x):
    raise ValueError("no %r" % (x,))


def big(x):
    return b"x" * x


FUNCTIONS = {"double": double, "fails": fails, "big": big}


@pytest.fixture
def make_core(tmp_path):
    def make(**behavior):
        path = write_toml(str(tmp_path / "w.toml"), worker_sections(
            str(tmp_path), "w", 40000, **behavior))
        core = WorkerCore(load_worker_config(path), "w1")
        for name, fn in FUNCTIONS.items():
            code = ser.dumps_function(fn)
            core.load_function(function_id(code, name), name, None, code)
        return core
    return make


@pytest.fixture
def core(make_core):
    return make_core()


def fid(core, name):
    [found] = [f.id for f in core.functions.values() if f.name == name]
    return found


def call(core, name, *args, payload=None, **options):
    """Run one call of ``name``; its reply."""
    meta = dict(options, f=fid(core, name))
    if payload is None:
        payload = ser.dumps((args, {}))
    frame = p.Frame(p.CALL, 7, p.encode_meta(meta), payload, p.FLAG_PICKLED)
    return core.run(frame, core.learn(frame))


def figures(core, name):
    return core.stats.snapshot()[fid(core, name)]


def test_a_result(core):
    type_, meta, payload, flags = call(core, "double", 21)
    assert (type_, meta, flags) == (p.OK, None, p.FLAG_PICKLED)
    assert ser.loads(payload) == 42
    assert figures(core, "double")["calls"] == 1


def test_a_function_that_raises(core):
    type_, meta, _, _ = call(core, "fails", 3)
    assert type_ == p.ERROR and meta["code"] == "execution"
    assert meta["type"] == "ValueError" and "no 3" in meta["message"]
    assert "fails" in meta["traceback"] and meta["worker_id"] == "w1"
    assert figures(core, "fails")["errors"] == 1


def test_arguments_that_do_not_fit(core):
    type_, meta, _, _ = call(core, "double", 1, 2)
    assert type_ == p.ERROR
    assert meta["code"] in ("parameter_mismatch", "execution")


def test_arguments_that_do_not_unpickle(core):
    type_, meta, _, _ = call(core, "double", payload=b"not a pickle")
    assert type_ == p.ERROR and meta["code"] == "serialization"
    assert "cannot be deserialized" in meta["message"]


def test_a_function_that_is_not_loaded(core):
    frame = p.Frame(p.CALL, 7, p.encode_meta({"f": "nope"}),
                    ser.dumps(((), {})), p.FLAG_PICKLED)
    type_, meta, _, _ = core.run(frame, core.learn(frame))
    assert type_ == p.ERROR and meta["code"] == "not_registered"


def test_a_result_over_the_callers_limit(core):
    type_, meta, _, _ = call(core, "big", 5000, max=1024)
    assert type_ == p.ERROR and meta["code"] == "serialization"
    assert "limited to 896 bytes" in meta["message"], meta  # 1024 - 1024 // 8
    assert call(core, "big", 10, max=1024)[0] == p.OK


def test_a_result_over_a_smaller_director_limit_once_it_is_known(core):
    assert call(core, "big", 100000)[0] == p.OK
    core.limit_results(65536)  # registered with a Director taking less
    type_, meta, _, _ = call(core, "big", 100000)
    assert type_ == p.ERROR and "limited to 61440 bytes" in meta["message"]


def test_a_result_saved_in_the_cache_is_returned_without_running(core):
    type_, meta, payload, _ = call(core, "double", 5, cache=True)
    assert type_ == p.OK and meta["func_id"] == fid(core, "double")
    _, hit_meta, hit_payload, _ = call(core, "double", 5, cache=True)
    assert hit_meta == {"cache": "hit"} and hit_payload == payload
    # Once a result is stored, calls that did not ask are looked up too.
    assert call(core, "double", 5)[1] == {"cache": "hit"}
    assert call(core, "double", 6)[1] is None
    fig = figures(core, "double")
    assert (fig["calls"], fig["cache_hits"], fig["cache_misses"]) == (4, 2, 2)


@pytest.mark.parametrize("cache_size, misses", [(0, 0), (16, 1)])
def test_a_call_counts_a_miss_only_with_a_cache(make_core, cache_size,
                                                misses):
    core = make_core(cache_size=cache_size)
    call(core, "double", 1)
    fig = figures(core, "double")
    assert (fig["calls"], fig["cache_hits"], fig["cache_misses"]) == (
        1, 0, misses)


def test_a_workflow_step_gets_earlier_outputs_as_arguments(core):
    workflow = {"id": "wf", "entry_function": "first", "functions": {
        "first": {"positional_args": [1], "default_args": {},
                  "next": "double", "cache_result": False},
        "double": {"positional_args": ["$first.output"], "default_args": {},
                   "next": "", "cache_result": False}}}
    assert wfl.validate(workflow) == []
    run = wfl.Run(workflow)
    run.done("first", ser.dumps(20))
    fields, parts = run.step_payload("double")
    type_, _, payload, _ = call(core, "double", payload=b"".join(parts),
                                **fields)
    assert type_ == p.OK and ser.loads(payload) == 40


def test_a_calls_time_limit_is_the_smaller_of_its_own_and_the_workers(
        make_core):
    core = make_core(call_timeout_s=2.0)
    for options, limit in (({}, 2.0), ({"timeout": 0.5}, 0.5),
                           ({"timeout": 9}, 2.0)):
        frame = p.Frame(p.CALL, 1, p.encode_meta(dict(options, f="x")))
        known = core.learn(frame)
        assert known.limit == limit and known.watch


def test_a_call_that_outlived_its_limit_is_answered_with_a_timeout(core):
    type_, meta, _, _ = core.timeout_reply(7, fid(core, "double"), 1.5)
    assert type_ == p.ERROR and meta["code"] == "timeout"
    assert "'double'" in meta["message"] and "1.5 s" in meta["message"]
    assert figures(core, "double")["timeouts"] == 1
