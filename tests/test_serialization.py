"""Tests of pyfaas/serialization.py: functions by value, signatures, errors.

Pure except for one subprocess: a function from a module that only this
process can import is unpickled in a fresh interpreter, as a Worker would.
"""

import functools
import importlib
import json
import subprocess
import sys
import textwrap
import threading

import cloudpickle
import pytest

from pyfaas import serialization as ser
from pyfaas.ids import function_id
from pyfaas.errors import PyFaaSError, PyFaaSSerializationError


def roundtrip(fn):
    return ser.loads(ser.dumps_function(fn))


# ----- functions by value ----------------------------------------------------

def test_closure_round_trips_with_its_captured_values():
    def make_adder(n):
        def add(x):
            return x + n
        return add

    add5 = roundtrip(make_adder(5))
    assert add5(2) == 7


def test_lambda_round_trips():
    square = roundtrip(lambda x, y=2: x ** y)
    assert square(3) == 9 and square(2, y=5) == 32


def test_function_id_is_a_stable_digest_of_the_code():
    code = ser.dumps_function(lambda x: x + 1)
    assert function_id(code) == function_id(bytes(code))
    assert len(function_id(code)) == 16
    assert function_id(code) != function_id(code + b"!")


def _write_module(folder, name, body):
    (folder / (name + ".py")).write_text(textwrap.dedent(body))


@pytest.fixture
def user_modules(tmp_path, request):
    """Two module files in tmp_path, importable here only during the test.

    Returns (a, b): ``a.compute`` uses a module-level helper of ``a``;
    ``b.twice`` uses ``a.compute`` imported by name.
    """
    tag = "".join(c if c.isalnum() else "_" for c in request.node.name)
    names = ("pyfaas_usermod_a_" + tag, "pyfaas_usermod_b_" + tag)
    _write_module(tmp_path, names[0], """
        OFFSET = 100

        def _helper(x):
            return x * 3 + OFFSET

        def compute(x):
            return _helper(x) + 1
    """)
    _write_module(tmp_path, names[1], """
        from %s import compute

        def twice(x):
            return 2 * compute(x)
    """ % names[0])
    sys.path.insert(0, str(tmp_path))
    try:
        yield tuple(importlib.import_module(name) for name in names)
    finally:
        sys.path.remove(str(tmp_path))
        for name in names:
            sys.modules.pop(name, None)


def _run_elsewhere(code_bytes, *args):
    """Unpickle and call in a fresh interpreter that cannot see tmp_path."""
    script = ("import pickle, sys; "
              "fn = pickle.loads(sys.stdin.buffer.read()); "
              "print(fn(*%r))" % (args,))
    proc = subprocess.run([sys.executable, "-c", script], input=code_bytes,
                          capture_output=True, timeout=60, cwd="/")
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc.stdout.decode().strip()


def test_function_from_an_unimportable_user_module_travels_by_value(
        user_modules):
    a, b = user_modules
    assert _run_elsewhere(ser.dumps_function(a.compute), 2) == "107"
    assert _run_elsewhere(ser.dumps_function(b.twice), 2) == "214"


def test_module_attribute_use_travels_by_value(user_modules):
    a, _ = user_modules
    namespace = {"usermod": a, "__name__": "__main__"}
    exec("def via_attribute(x):\n    return usermod.compute(x) - 1\n",
         namespace)
    code = ser.dumps_function(namespace["via_attribute"])
    assert _run_elsewhere(code, 0) == "100"




def test_closure_over_a_user_module_function_travels_by_value(user_modules):
    def make(fn):
        return lambda x: fn(x) * 10

    code = ser.dumps_function(make(user_modules[0].compute))
    assert _run_elsewhere(code, 0) == "1010"


def test_partial_of_a_user_module_function_travels_by_value(user_modules):
    code = ser.dumps_function(functools.partial(user_modules[1].twice, 0))
    assert _run_elsewhere(code) == "202"


def test_by_value_registration_does_not_leak(user_modules):
    a, _ = user_modules
    ser.dumps_function(a.compute)
    # Afterwards the module pickles by reference again, as before.
    assert b"_helper" not in cloudpickle.dumps(a.compute)
    assert a.__name__.encode() in cloudpickle.dumps(a.compute)


def test_unpicklable_function_raises_serialization_error():
    lock = threading.Lock()

    def uses_lock():
        with lock:
            return 1

    with pytest.raises(PyFaaSSerializationError, match="uses_lock"):
        ser.dumps_function(uses_lock)


# ----- values ----------------------------------------------------------------

def test_values_round_trip():
    value = {"a": [1, 2.5, None], "b": (b"x", {"nested"})}
    assert ser.loads(ser.dumps(value)) == value


@pytest.mark.parametrize("obj, type_name", [
    (threading.Lock(), "lock"),
    ((x for x in range(3)), "generator"),
])
def test_unpicklable_value_names_its_type(obj, type_name):
    with pytest.raises(PyFaaSSerializationError) as info:
        ser.dumps(obj, what="argument")
    assert "argument of type %s" % type_name in str(info.value)
    assert isinstance(info.value, PyFaaSError)


def test_json_helpers_round_trip_and_tolerate_odd_values():
    assert ser.from_json(ser.to_json({"a": [1, "é"]})) == {"a": [1, "é"]}
    assert ser.from_json(ser.to_json({"s": {1}})) == {"s": "{1}"}


# ----- signatures ------------------------------------------------------------

def everything(a, b, /, c, d=4, *args, e, f="F", **kwargs):
    return a


def test_describe_signature_lists_every_parameter_kind():
    desc = ser.describe_signature(everything)
    assert [entry[:3] for entry in desc] == [
        ["a", 0, False], ["b", 0, False], ["c", 1, False], ["d", 1, True],
        ["args", 2, False], ["e", 3, False], ["f", 3, True],
        ["kwargs", 4, False]]


def test_signature_text_shows_the_signature():
    text = ser.signature_text(ser.describe_signature(everything))
    assert text == "(a, b, /, c, d=4, *args, e, f='F', **kwargs)"


def test_signature_text_of_a_description_without_default_reprs():
    assert ser.signature_text([["x", 1, False], ["y", 1, True]]) == \
        "(x, y=...)"


def test_description_is_json_ready():
    desc = ser.describe_signature(everything)
    assert json.loads(json.dumps(desc)) == desc


def test_signature_of_something_without_one_is_none():
    class NoSignature:
        __signature__ = "not a signature"

        def __call__(self):
            pass

    assert ser.describe_signature(NoSignature()) is None
    assert ser.check_arguments(None, (1, 2, 3), {"any": 1}) is None


@pytest.mark.parametrize("args, kwargs", [
    ((1, 2, 3), {"e": 5}),
    ((1, 2), {"c": 3, "e": 5}),
    ((1, 2, 3, 4, 5, 6), {"e": 5, "f": 6, "g": 7}),
])
def test_check_arguments_accepts_fitting_calls(args, kwargs):
    desc = ser.describe_signature(everything)
    assert ser.check_arguments(desc, args, kwargs) is None
    everything(*args, **kwargs)  # and Python agrees


@pytest.mark.parametrize("args, kwargs, why", [
    ((1, 2, 3), {}, "'e'"),                       # keyword-only missing
    ((1,), {"b": 2, "c": 3, "e": 5}, "'b'"),      # positional-only by name
    ((1, 2), {"e": 5}, "'c'"),                    # required positional missing
    ((1, 2, 3), {"e": 5, "c": 9}, "multiple values"),
])
def test_check_arguments_explains_mismatches(args, kwargs, why):
    desc = ser.describe_signature(everything)
    message = ser.check_arguments(desc, args, kwargs)
    assert message is not None and why in message
    with pytest.raises(TypeError):
        everything(*args, **kwargs)


def test_check_arguments_without_varargs():
    def two(x, y=1):
        return x

    desc = ser.describe_signature(two)
    assert ser.check_arguments(desc, (1,), {}) is None
    assert "too many positional" in ser.check_arguments(desc, (1, 2, 3), {})
    assert "unexpected keyword" in ser.check_arguments(desc, (1,), {"z": 1})


# ----- remote exceptions -----------------------------------------------------

def failing_user_function(x):
    return 1 / x


def test_exception_info_carries_type_message_and_traceback():
    try:
        failing_user_function(0)
    except ZeroDivisionError as exc:
        info = ser.exception_info(exc)
    assert info["type"] == "ZeroDivisionError"
    assert info["message"] == "division by zero"
    assert "failing_user_function" in info["traceback"]
    assert "return 1 / x" in info["traceback"]
    assert info["traceback"].rstrip().endswith(
        "ZeroDivisionError: division by zero")


def test_exception_info_can_skip_the_callers_frames():
    def worker_side_runner():
        return failing_user_function(0)

    try:
        worker_side_runner()
    except ZeroDivisionError as exc:
        full = ser.exception_info(exc)
        trimmed = ser.exception_info(exc, skip_frames=2)
        too_many = ser.exception_info(exc, skip_frames=99)
    assert "worker_side_runner" in full["traceback"]
    assert "worker_side_runner" not in trimmed["traceback"]
    assert "failing_user_function" in trimmed["traceback"]
    # Skipping more frames than exist keeps at least the innermost one.
    assert "failing_user_function" in too_many["traceback"]
