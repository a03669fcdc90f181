"""Real processes: workflows (``pyfaas_chain_exec``) on a Director and Workers.

The original chained-execution example, fan-out/fan-in DAGs whose branches
overlap in time (on two Workers and on one Worker's pool), the result cache
of ``cache_result`` steps, failing steps, malformed workflows sent past the
client's validation, a Worker lost mid-workflow, a whole-workflow timeout,
the ``python -m pyfaas workflow`` commands and examples/workflows.py.

Functions are defined here so that they travel to the Workers by value. A
step's name is the name its function is registered under, so one function
registered under several names serves several steps.
"""

import copy
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from helpers import (encode_frame, process_of, raw_connect, read_frame,
                     wait_until)
from pyfaas import (pyfaas_chain_exec, pyfaas_close, pyfaas_config,
                    pyfaas_load_workflow)
from pyfaas.wire import protocol as p
from pyfaas.wire.decoder import FrameDecoder
from pyfaas.errors import (PyFaaSChainedExecutionError, PyFaaSTimeoutError,
                           PyFaaSWorkflowValidationError, error_from_meta)

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent
RUN_TIMEOUT_S = 30
BRANCH_S = 0.5


# ----- functions that run on the Workers -------------------------------------

def add(a: int, b: int, c: int = 12) -> int:
    return a + b + c


def multiply(a, b, c=45):
    return a * b * c


def divide(a, b):
    return a / b


def fan_src(n):
    return n


def branch(x, label):
    start = time.time()
    time.sleep(0.5)
    return {"label": label, "start": start, "end": time.time(),
            "pid": os.getpid(), "value": x * 2}


def fan_join(left, right):
    return {"sum": left["value"] + right["value"], "left": left,
            "right": right}


def fan_side(x):
    return -x


def record(path, tag, x=0):
    """Append ``tag`` to the file ``path`` (one line per execution)."""
    with open(path, "a") as fh:
        fh.write(tag + "\n")
    return x + len(tag)


def boom(x):
    value = x + 1
    raise ValueError("boom at %d" % value)


def sleeper(seconds):
    time.sleep(seconds)
    return seconds


def whoami():
    return os.getpid()


ORIGINAL = {
    "id": "abc1234",
    "entry_function": "add",
    "functions": {
        "add": {"positional_args": [5, 10], "default_args": {"c": 26},
                "next": "multiply", "cache_result": True},
        "multiply": {"positional_args": [13, 4],
                     "default_args": {"c": "$add.output"},
                     "next": "divide", "cache_result": False},
        "divide": {"positional_args": ["$multiply.output", 20],
                   "default_args": {}, "next": "", "cache_result": True},
    },
}

FANOUT = {
    "id": "fan",
    "entry_function": "fan_src",
    "functions": {
        "fan_src": {"positional_args": [10], "default_args": {},
                    "next": ["fan_left", "fan_right", "fan_side"],
                    "cache_result": False},
        "fan_left": {"positional_args": ["$fan_src.output", "left"],
                     "default_args": {}, "next": "fan_join",
                     "cache_result": False},
        "fan_right": {"positional_args": ["$fan_src.output"],
                      "default_args": {"label": "right"},
                      "next": "fan_join", "cache_result": False},
        "fan_side": {"positional_args": ["$fan_src.output"],
                     "default_args": {}, "next": "", "cache_result": False},
        "fan_join": {"positional_args": ["$fan_left.output"],
                     "default_args": {"right": "$fan_right.output"},
                     "next": "", "cache_result": False},
    },
}


def step(next_="", args=None, kwargs=None, cache=False):
    return {"positional_args": args or [], "default_args": kwargs or {},
            "next": next_, "cache_result": cache}


def register_all(client):
    for fn in (add, multiply, divide, fan_src, fan_join, fan_side, whoami):
        client.register(fn)
    client.register(branch, name="fan_left")
    client.register(branch, name="fan_right")


@pytest.fixture(scope="module")
def registered(cluster):
    """The module's cluster with the example functions registered."""
    with cluster.client() as c:
        register_all(c)
    return cluster


@pytest.fixture
def wf_client(registered):
    c = registered.client()
    try:
        yield c
    finally:
        c.close()


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT)] + [x for x in env.get("PYTHONPATH", "").split(os.pathsep)
                       if x])
    return env


def run_python(args, timeout=RUN_TIMEOUT_S):
    """Run ``python ARGS`` from the repository root; it is gone on return."""
    return subprocess.run([sys.executable] + list(args),
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=timeout, env=_env(),
                          cwd=str(ROOT), universal_newlines=True)


def lines_of(path):
    try:
        with open(str(path)) as fh:
            return fh.read().split()
    except FileNotFoundError:
        return []


# ----- the original example --------------------------------------------------

def test_original_example_from_a_dict(wf_client):
    assert wf_client.chain_exec(copy.deepcopy(ORIGINAL)) == pytest.approx(106.6)


def test_original_example_from_a_json_string(wf_client):
    assert wf_client.chain_exec(json.dumps(ORIGINAL)) == pytest.approx(106.6)


def test_original_example_through_the_functional_api(registered, tmp_path):
    path = tmp_path / "chain.json"
    path.write_text(json.dumps(ORIGINAL, indent=2))
    pyfaas_config(registered.client_config())
    try:
        workflow = pyfaas_load_workflow(str(path))
        assert workflow == ORIGINAL
        assert pyfaas_chain_exec(workflow) == pytest.approx(106.6)
        assert pyfaas_chain_exec(path.read_text()) == pytest.approx(106.6)
    finally:
        pyfaas_close()


# ----- fan-out / fan-in ------------------------------------------------------

def _check_fanout(client):
    start = time.monotonic()
    result = client.chain_exec(copy.deepcopy(FANOUT))
    elapsed = time.monotonic() - start

    assert set(result) == {"fan_join", "fan_side"}
    assert result["fan_side"] == -10
    join = result["fan_join"]
    assert join["sum"] == 40
    left, right = join["left"], join["right"]
    assert (left["label"], right["label"]) == ("left", "right")
    # the two 0.5 s branches ran at the same time
    overlap = min(left["end"], right["end"]) - max(left["start"],
                                                   right["start"])
    assert overlap > BRANCH_S / 2, (left, right)
    assert elapsed < 0.95, "fan-out took %.2f s" % elapsed
    return left["pid"], right["pid"]


def test_fan_out_fan_in_on_two_workers(wf_client, registered):
    pids = _check_fanout(wf_client)
    # Round-Robin sends the two branches, launched together, to both Workers
    assert set(pids) == {proc.pid for proc in registered.workers.values()}


def test_fan_out_fan_in_on_one_worker(fresh_cluster):
    cl = fresh_cluster(workers=1)
    client = cl.client()
    register_all(client)
    (proc,) = cl.workers.values()
    assert _check_fanout(client) == (proc.pid, proc.pid)


def test_single_final_step_returns_its_output_not_a_dict(wf_client):
    wf = {"id": "one", "entry_function": "fan_src", "functions": {
        "fan_src": step(["fan_side"], args=[3]),
        "fan_side": step("", args=["$fan_src.output"])}}
    assert wf_client.chain_exec(wf) == -3


# ----- cache_result -----------------------------------------------------------

def test_cache_result_steps_are_served_from_the_cache(wf_client, tmp_path):
    for name in ("cached_a", "cached_b", "uncached_c"):
        wf_client.register(record, name=name)
    path = str(tmp_path / "runs.txt")
    wf = {"id": "cached", "entry_function": "cached_a", "functions": {
        "cached_a": step("cached_b", args=[path, "a"], cache=True),
        "cached_b": step("uncached_c", args=[path, "b"],
                         kwargs={"x": "$cached_a.output"}, cache=True),
        "uncached_c": step("", args=[path, "c", "$cached_b.output"]),
    }}

    assert wf_client.chain_exec(wf) == 3
    assert lines_of(path) == ["a", "b", "c"]
    assert wf_client.chain_exec(wf) == 3
    # a and b were not executed again; c (cache_result false) was
    assert lines_of(path) == ["a", "b", "c", "c"]
    hits = wf_client.get_stats("cached_b")["functions"]
    assert sum(f["cache_hits"] for f in hits.values()) == 1


# ----- failures ----------------------------------------------------------------

def test_a_raising_step_stops_the_workflow(wf_client, tmp_path):
    wf_client.register(record, name="fail_first")
    wf_client.register(boom, name="fail_boom")
    wf_client.register(record, name="fail_after")
    path = str(tmp_path / "runs.txt")
    wf = {"id": "wf-fails", "entry_function": "fail_first", "functions": {
        "fail_first": step("fail_boom", args=[path, "first"]),
        "fail_boom": step("fail_after", args=["$fail_first.output"]),
        "fail_after": step("", args=[path, "after", "$fail_boom.output"]),
    }}

    with pytest.raises(PyFaaSChainedExecutionError) as info:
        wf_client.chain_exec(wf)

    exc = info.value
    assert exc.workflow_id == "wf-fails"
    assert exc.step == "fail_boom"
    assert exc.cause == "execution"
    assert exc.remote_type == "ValueError"
    assert exc.remote_message == "boom at 6"
    assert 'raise ValueError("boom at %d" % value)' in exc.remote_traceback
    assert "in boom" in exc.remote_traceback
    assert "wf-fails" in str(exc) and "fail_boom" in str(exc)
    # the cluster is idle again and the dependent step never ran
    assert wf_client.chain_exec(copy.deepcopy(ORIGINAL)) == pytest.approx(
        106.6)
    assert lines_of(path) == ["first"]


def test_client_validation_lists_every_problem_before_sending(wf_client):
    wf = copy.deepcopy(ORIGINAL)
    wf["functions"]["add"]["positional_args"] = [5]          # b missing
    wf["functions"]["divide"]["next"] = "nowhere"
    wf["functions"]["square_unknown"] = step("")
    with pytest.raises(PyFaaSWorkflowValidationError) as info:
        wf_client.chain_exec(wf)
    problems = info.value.problems
    assert any(x.startswith("step 'add':") and "do not fit" in x
               for x in problems), problems
    assert any(x.startswith("step 'divide':") and "'nowhere'" in x
               for x in problems), problems
    assert any(x.startswith("step 'square_unknown':") and "not registered"
               in x for x in problems), problems
    assert any(x.startswith("step 'square_unknown':") and "unreachable"
               in x for x in problems), problems


def test_malformed_workflow_past_client_validation(wf_client):
    wf = {"id": "bad-wf", "entry_function": "add", "extra": 1, "functions": {
        "add": step("multiply", args=[5, 10, 1, 2]),
        "multiply": step("add", args=[1, 2], kwargs={"c": "$ghost.output"}),
        "not_registered_fn": step(""),
    }}

    with pytest.raises(PyFaaSWorkflowValidationError) as info:
        wf_client.chain_exec(wf, validate=False)

    problems = info.value.problems
    assert "bad-wf" in str(info.value)

    def has(*words):
        return any(all(w in x for w in words) for x in problems)

    assert has("workflow:", "'extra'", "unknown"), problems
    assert has("cycle", "add", "multiply"), problems
    assert has("step 'multiply':", "'default_args'", "'ghost'"), problems
    assert has("step 'not_registered_fn':", "unreachable"), problems
    assert has("step 'not_registered_fn':", "not registered"), problems
    assert has("step 'add':", "do not fit"), problems
    for problem in problems:
        assert problem in str(info.value)
    # the Director goes on serving this client and others
    assert wf_client.call("add", 1, 2) == 15
    assert wf_client.chain_exec(ORIGINAL) == pytest.approx(106.6)


@pytest.mark.parametrize("payload", [
    b"\xff{not json", b"[1, 2, 3]", b'"a string"',
    b'{"id": "x", "entry_function": "a", "functions": {"a": 5}}',
    b'{"id": "x", "entry_function": "a", "functions": '
    b'{"a": {"positional_args": [], "default_args": {}, '
    b'"next": [{"deep": 1}, ["a"]], "cache_result": false}}}',
])
def test_garbage_workflow_frames_get_a_validation_error(wf_client, payload):
    # Straight onto the wire: not even the client's JSON parsing applies.
    with raw_connect(wf_client.port, timeout=10) as sock:
        decoder = FrameDecoder()
        sock.sendall(p.encode_preamble(p.ROLE_CLIENT))
        assert read_frame(sock, decoder).type == p.HELLO
        sock.sendall(encode_frame(p.CHAIN, 7, None, payload))
        reply = read_frame(sock, decoder, timeout=10)
    assert (reply.type, reply.request_id) == (p.ERROR, 7)
    error = error_from_meta(reply.meta())
    assert isinstance(error, PyFaaSWorkflowValidationError) and error.problems
    assert wf_client.call("add", 1, 2) == 15


def test_worker_killed_mid_workflow(fresh_cluster):
    cl = fresh_cluster(workers=1)
    client = cl.client()
    client.register(sleeper, name="slow_step")
    client.register(fan_side)
    client.register(whoami)
    (wid,) = client.worker_ids()
    proc = process_of(cl, wid, client)
    wf = {"id": "wf-lost", "entry_function": "slow_step", "functions": {
        "slow_step": step("fan_side", args=[5]),
        "fan_side": step("", args=["$slow_step.output"])}}

    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(client.chain_exec, wf, 15)
        wait_until(lambda: client.worker_info(wid)["network"]["inflight"] >= 1,
                   5, "the step never started on %s" % wid)
        os.kill(proc.pid, signal.SIGKILL)
        start = time.monotonic()
        with pytest.raises(PyFaaSChainedExecutionError) as info:
            future.result(timeout=15)
        elapsed = time.monotonic() - start

    assert elapsed < 3.0
    exc = info.value
    assert exc.cause == "worker_lost"
    assert exc.workflow_id == "wf-lost" and exc.step == "slow_step"
    assert exc.worker_id == wid
    assert "wf-lost" in str(exc) and "slow_step" in str(exc)
    proc.wait(10)

    new = cl.start_worker(heartbeat_ms=200)
    wait_until(lambda: client.worker_ids() and wid not in client.worker_ids(),
               10, "a new worker never replaced %s" % wid)
    wf["functions"]["slow_step"]["positional_args"] = [0]
    assert client.chain_exec(wf) == 0
    assert client.call("whoami") == new.pid


def test_whole_workflow_timeout(wf_client):
    wf_client.register(sleeper, name="timeout_step")
    wf = {"id": "wf-slow", "entry_function": "timeout_step", "functions": {
        "timeout_step": step("fan_side", args=[3]),
        "fan_side": step("", args=["$timeout_step.output"])}}

    start = time.monotonic()
    with pytest.raises(PyFaaSTimeoutError):
        wf_client.chain_exec(wf, timeout=0.5)
    elapsed = time.monotonic() - start

    assert 0.4 < elapsed < 2.0
    assert wf_client.call("add", 1, 2) == 15
    assert wf_client.chain_exec(ORIGINAL, timeout=10) == pytest.approx(106.6)


def test_concurrent_workflows_on_one_client(wf_client):
    def run(i):
        wf = copy.deepcopy(ORIGINAL)
        wf["id"] = "concurrent-%d" % i
        wf["functions"]["divide"]["positional_args"][1] = i
        return wf_client.chain_exec(wf)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(run, range(1, 13)))
    assert results == pytest.approx([2132 / i for i in range(1, 13)])


# ----- command line and examples ------------------------------------------------

def test_cli_template_output_validates(tmp_path):
    out = run_python(["-m", "pyfaas", "workflow", "template", "--steps", "3"])
    assert out.returncode == 0, out.stderr
    wf = json.loads(out.stdout)
    assert len(wf["functions"]) == 3
    path = tmp_path / "template.json"
    path.write_text(out.stdout)

    check = run_python(["-m", "pyfaas", "workflow", "validate", str(path)])
    assert check.returncode == 0, check.stdout + check.stderr
    assert "valid" in check.stdout


def test_cli_validate_prints_every_problem(tmp_path):
    wf = copy.deepcopy(ORIGINAL)
    wf["functions"]["add"]["next"] = "multiplyy"
    wf["functions"]["divide"]["cache_result"] = 1
    wf["functions"]["multiply"]["default_args"] = {"c": "$divide.output"}
    wf["owner"] = "me"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(wf))

    out = run_python(["-m", "pyfaas", "workflow", "validate", str(path)])

    assert out.returncode == 1, out.stdout + out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    text = out.stdout
    for words in [("step 'add'", "'next'", "'multiplyy'"),
                  ("step 'divide'", "'cache_result'"),
                  ("step 'multiply'", "'default_args'", "'divide'"),
                  ("workflow", "'owner'")]:
        assert any(all(w in line for w in words)
                   for line in text.splitlines()), (words, text)


def test_cli_validate_of_a_file_that_is_not_json(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{nope")
    out = run_python(["-m", "pyfaas", "workflow", "validate", str(path)])
    assert out.returncode != 0
    assert "Traceback" not in out.stdout + out.stderr
    assert str(path) in out.stdout + out.stderr


def test_cli_run_prints_the_result(registered, tmp_path):
    path = tmp_path / "chain.json"
    path.write_text(json.dumps(ORIGINAL))
    out = run_python(["-m", "pyfaas", "workflow", "run", str(path),
                      "--config", registered.client_config()])
    assert out.returncode == 0, out.stdout + out.stderr
    assert float(out.stdout.strip()) == pytest.approx(106.6)


def test_cli_run_of_a_failing_workflow(registered, tmp_path):
    with registered.client() as c:
        c.register(boom, name="cli_boom")
    wf = {"id": "cli-fails", "entry_function": "fan_src", "functions": {
        "fan_src": step("cli_boom", args=[1]),
        "cli_boom": step("", args=["$fan_src.output"])}}
    path = tmp_path / "fails.json"
    path.write_text(json.dumps(wf))
    out = run_python(["-m", "pyfaas", "workflow", "run", str(path),
                      "--config", registered.client_config()])
    assert out.returncode == 1, out.stdout + out.stderr
    assert "cli-fails" in out.stderr and "cli_boom" in out.stderr
    assert "ValueError" in out.stderr


def test_cli_run_of_a_workflow_naming_unregistered_functions(registered,
                                                             tmp_path):
    wf = {"id": "cli-unknown", "entry_function": "never_registered",
          "functions": {"never_registered": step("")}}
    path = tmp_path / "unknown.json"
    path.write_text(json.dumps(wf))
    out = run_python(["-m", "pyfaas", "workflow", "run", str(path),
                      "--config", registered.client_config()])
    assert out.returncode == 1, out.stdout + out.stderr
    assert "never_registered" in out.stdout and "not registered" in out.stdout


def test_examples_workflows_script(registered):
    out = run_python([str(ROOT / "examples" / "workflows.py"),
                      registered.client_config()])
    assert out.returncode == 0, out.stdout + out.stderr
    assert "106.6" in out.stdout
    assert "fan-out/fan-in" in out.stdout
    # the script re-registered add & co. from its own module: still right
    with registered.client() as c:
        assert c.chain_exec(ORIGINAL) == pytest.approx(106.6)
