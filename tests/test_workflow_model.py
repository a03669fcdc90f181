"""Pure tests of pyfaas.workflow: validation rules, the Run state, step payloads.

Every validation rule has a failing case, and each asserts that the problem
names the step (or ``workflow``) and the field it is about, as the issue asks.
No sockets, no processes.
"""

import copy
import json

import pytest

from pyfaas import serialization as ser
from pyfaas import workflow as wfl
from pyfaas.worker.core import call_arguments


# ----- the functions of the original example (signatures only) ----------------

def add(a: int, b: int, c: int = 12) -> int:
    return a + b + c


def multiply(a, b, c=45):
    return a * b * c


def divide(a, b):
    return a / b


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

REGISTRY = {fn.__name__: ser.describe_signature(fn)
            for fn in (add, multiply, divide)}


def step(next_="", args=None, kwargs=None, cache=False):
    return {"positional_args": [] if args is None else args,
            "default_args": {} if kwargs is None else kwargs,
            "next": next_, "cache_result": cache}


def workflow(entry, **steps):
    return {"id": "wf-test", "entry_function": entry, "functions": steps}


def original():
    return copy.deepcopy(ORIGINAL)


def problem_about(problems, where, field, *words):
    """The one problem naming ``where`` (a step or "workflow") and ``field``.

    Args:
        where: a step name, or "workflow" for top-level problems.
        field: the field name the problem must name (quoted, or as a word).
        words: more text the problem must contain.
    """
    prefix = "workflow:" if where == "workflow" else "step %r:" % where
    found = [x for x in problems
             if x.startswith(prefix)
             and (repr(field) in x or " %s " % field in x)
             and all(w in x for w in words)]
    assert found, "no problem about %s field %r containing %r in:\n  %s" % (
        where, field, words, "\n  ".join(problems))
    return found[0]


# ----- the original example ----------------------------------------------------------

def test_original_example_validates_clean():
    assert wfl.validate(original()) == []
    assert wfl.validate(original(), REGISTRY) == []


def test_original_example_parses_from_a_json_string_and_bytes():
    text = json.dumps(ORIGINAL)
    assert wfl.parse(text) == (ORIGINAL, [])
    assert wfl.parse(text.encode()) == (ORIGINAL, [])
    assert wfl.parse(ORIGINAL) == (ORIGINAL, [])


def test_parse_rejects_bad_json_and_non_objects():
    wf, problems = wfl.parse("{not json")
    assert wf is None and len(problems) == 1
    assert problems[0].startswith("workflow:") and "JSON" in problems[0]
    wf, problems = wfl.parse("[1, 2]")
    assert wf is None and "list" in problems[0]


@pytest.mark.parametrize("steps", [1, 2, 3, 7])
def test_template_validates_clean(steps):
    wf = wfl.template(steps)
    assert len(wf["functions"]) == steps
    assert wfl.validate(wf) == []
    assert wfl.validate(json.loads(json.dumps(wf))) == []
    finals = [n for n, s in wf["functions"].items() if s["next"] == ""]
    assert len(finals) == 1


# ----- missing, mistyped and unknown fields ------------------------------------------

@pytest.mark.parametrize("field", ["id", "entry_function", "functions"])
def test_missing_top_level_field(field):
    wf = original()
    del wf[field]
    problem_about(wfl.validate(wf), "workflow", field, "missing")


@pytest.mark.parametrize("field", ["positional_args", "default_args", "next",
                                   "cache_result"])
def test_missing_step_field(field):
    wf = original()
    del wf["functions"]["multiply"][field]
    problem_about(wfl.validate(wf), "multiply", field, "missing")


@pytest.mark.parametrize("field,value", [
    ("id", 1234), ("id", True), ("id", None),
    ("entry_function", ["add"]), ("entry_function", False),
    ("functions", ["add"]),
])
def test_mistyped_top_level_field(field, value):
    wf = original()
    wf[field] = value
    problem_about(wfl.validate(wf), "workflow", field, "must be")


@pytest.mark.parametrize("field,value", [
    ("positional_args", {"a": 1}), ("positional_args", "5, 10"),
    ("positional_args", True),
    ("default_args", [26]), ("default_args", False),
    ("next", 3), ("next", None), ("next", True),
    ("cache_result", "yes"), ("cache_result", None),
    # bool vs int: 1 and 0 are ints, not booleans (JSON true/false only)
    ("cache_result", 1), ("cache_result", 0),
])
def test_mistyped_step_field(field, value):
    wf = original()
    wf["functions"]["add"][field] = value
    problem_about(wfl.validate(wf), "add", field, "must be")


def test_bool_is_not_accepted_where_a_list_or_string_is_expected():
    wf = original()
    wf["functions"]["divide"]["positional_args"] = False
    wf["functions"]["divide"]["next"] = False
    problems = wfl.validate(wf)
    problem_about(problems, "divide", "positional_args", "must be")
    problem_about(problems, "divide", "next", "must be")


def test_next_list_with_a_non_string_item():
    wf = original()
    wf["functions"]["add"]["next"] = ["multiply", 7]
    problem_about(wfl.validate(wf), "add", "next", "7")


def test_unknown_top_level_field():
    wf = original()
    wf["entry"] = "add"
    problem_about(wfl.validate(wf), "workflow", "entry", "unknown")


def test_unknown_step_field():
    wf = original()
    wf["functions"]["divide"]["cache"] = True
    problem_about(wfl.validate(wf), "divide", "cache", "unknown")


def test_step_that_is_not_an_object():
    wf = original()
    wf["functions"]["divide"] = ["$multiply.output", 20]
    problems = wfl.validate(wf)
    assert any(x.startswith("step 'divide':") for x in problems), problems


def test_empty_functions():
    problem_about(wfl.validate(workflow("a")), "workflow", "functions")


# ----- graph rules -----------------------------------------------------------------

def test_entry_function_not_among_the_steps():
    wf = original()
    wf["entry_function"] = "substract"
    problem_about(wfl.validate(wf), "workflow", "entry_function",
                  "'substract'")


def test_next_points_nowhere_string_form():
    wf = original()
    wf["functions"]["multiply"]["next"] = "divde"
    problem_about(wfl.validate(wf), "multiply", "next", "'divde'")


def test_next_points_nowhere_list_form():
    wf = original()
    wf["functions"]["multiply"]["next"] = ["divide", "modulo"]
    problems = wfl.validate(wf)
    problem_about(problems, "multiply", "next", "'modulo'")
    assert not any("'divide'" in x and "unknown" in x for x in problems)


def _cycle_steps(problem):
    """Steps named by a "closes a cycle: a -> b -> a" problem, in order."""
    chain = problem.split("cycle:", 1)[1].strip().split(" -> ")
    assert chain[0] == chain[-1], problem
    return chain[:-1]


def test_cycle_of_length_1():
    wf = workflow("start",
                  start=step(["loop", "end"]),
                  loop=step("loop"),
                  end=step(""))
    problems = wfl.validate(wf)
    problem = problem_about(problems, "loop", "next", "cycle")
    assert _cycle_steps(problem) == ["loop"]
    assert len([x for x in problems if "cycle" in x]) == 1


def test_cycle_of_length_2():
    wf = workflow("start",
                  start=step("a"),
                  a=step(["b", "end"]),
                  b=step("a"),
                  end=step(""))
    problems = wfl.validate(wf)
    cycles = [x for x in problems if "cycle" in x]
    assert len(cycles) == 1, problems
    problem = problem_about(cycles, "b", "next", "cycle")
    assert sorted(_cycle_steps(problem)) == ["a", "b"]


def test_cycle_of_length_3():
    wf = workflow("start",
                  start=step("a"),
                  a=step("b"),
                  b=step("c"),
                  c=step(["a", "end"]),
                  end=step(""))
    problems = wfl.validate(wf)
    cycles = [x for x in problems if "cycle" in x]
    assert len(cycles) == 1, problems
    problem = problem_about(cycles, "c", "next", "cycle")
    assert sorted(_cycle_steps(problem)) == ["a", "b", "c"]


def test_cycle_back_to_the_entry_without_any_final_step():
    wf = original()
    wf["functions"]["divide"]["next"] = "add"
    problems = wfl.validate(wf)
    problem = [x for x in problems if "cycle" in x]
    assert len(problem) == 1
    assert sorted(_cycle_steps(problem[0])) == ["add", "divide", "multiply"]
    problem_about(problems, "workflow", "next", "no final step")


def test_unreachable_step():
    wf = original()
    wf["functions"]["orphan"] = step("divide")
    problem_about(wfl.validate(wf), "orphan", "entry_function", "unreachable")


def test_no_final_step():
    wf = workflow("a", a=step("b"), b=step("a"))
    problem_about(wfl.validate(wf), "workflow", "next", "no final step")


def test_empty_next_list_is_a_final_step():
    wf = workflow("a", a=step(["b"]), b=step([]))
    assert wfl.validate(wf) == []


# ----- references ---------------------------------------------------------------------

def test_reference_to_an_unknown_step():
    wf = original()
    wf["functions"]["divide"]["positional_args"] = ["$multiplyy.output", 20]
    problem_about(wfl.validate(wf), "divide", "positional_args", "unknown",
                  "'multiplyy'")


def test_reference_to_an_unknown_step_nested_in_default_args():
    wf = original()
    wf["functions"]["multiply"]["default_args"] = {
        "c": {"deep": ["x", "$nothere.output"]}}
    problem_about(wfl.validate(wf), "multiply", "default_args", "unknown",
                  "'nothere'")


def test_reference_to_a_later_step():
    wf = original()
    wf["functions"]["add"]["default_args"] = {"c": "$divide.output"}
    problem_about(wfl.validate(wf), "add", "default_args", "'divide'",
                  "does not run before")


def test_reference_to_itself():
    wf = original()
    wf["functions"]["multiply"]["positional_args"] = ["$multiply.output", 4]
    problem_about(wfl.validate(wf), "multiply", "positional_args",
                  "'multiply'", "does not run before")


def test_reference_to_a_sibling_branch():
    wf = workflow("src",
                  src=step(["left", "right"]),
                  left=step("join", args=["$src.output", "$right.output"]),
                  right=step("join", args=["$src.output"]),
                  join=step("", args=["$left.output", "$right.output"]))
    problems = wfl.validate(wf)
    problem = problem_about(problems, "left", "positional_args", "'right'",
                            "does not run before")
    assert len(problems) == 1, problems  # $src.output and the join are fine
    assert "'src'" not in problem


def test_fan_in_may_reference_every_ancestor():
    wf = workflow("src",
                  src=step(["left", "right"]),
                  left=step("join", args=["$src.output"]),
                  right=step("join", kwargs={"x": "$src.output"}),
                  join=step("", args=[["$left.output", "$right.output"]],
                            kwargs={"base": "$src.output"}))
    assert wfl.validate(wf) == []


def test_reference_like_strings_that_are_not_references_are_plain_values():
    wf = original()
    wf["functions"]["add"]["default_args"] = {
        "c": "cost: $add.output", "d": "$add.outputs", "e": "$.output"}
    assert not any("references" in x for x in wfl.validate(wf))


# ----- registry rules -----------------------------------------------------------------

def test_function_not_registered():
    registry = {"add": REGISTRY["add"], "divide": REGISTRY["divide"]}
    problems = wfl.validate(original(), registry)
    assert len(problems) == 1, problems
    assert problems[0].startswith("step 'multiply':")
    assert "not registered" in problems[0]


def test_registry_with_unknown_signature_accepts_any_arguments():
    registry = dict(REGISTRY, multiply=None)
    wf = original()
    wf["functions"]["multiply"]["positional_args"] = [1, 2, 3, 4, 5]
    assert wfl.validate(wf, registry) == []


@pytest.mark.parametrize("where,field,value", [
    ("add", "positional_args", [5, 10, 26, 99]),   # too many
    ("divide", "positional_args", ["$multiply.output"]),   # missing b
    ("multiply", "default_args", {"c": "$add.output", "d": 1}),  # unknown kw
    ("add", "default_args", {"a": 1}),  # a given twice
])
def test_arguments_that_do_not_fit_the_signature(where, field, value):
    wf = original()
    wf["functions"][where][field] = value
    problems = wfl.validate(wf, REGISTRY)
    assert len(problems) == 1, problems
    problem = problems[0]
    assert problem.startswith("step %r:" % where), problem
    assert "do not fit" in problem
    assert "'positional_args'" in problem or "'default_args'" in problem
    # the signature is shown, e.g. "add(a: int, b: int, c: int = 12)"
    assert where + "(" in problem


# ----- every problem at once --------------------------------------------------------------

def test_a_workflow_with_many_problems_lists_all_of_them():
    wf = {
        "id": 42,                                   # mistyped
        "entry_function": "add",
        "owner": "me",                              # unknown top-level
        "functions": {
            "add": {"positional_args": [5, 10, 1, 2],   # too many for add
                    "default_args": {"c": "$ghost.output"},  # unknown ref
                    "next": ["multiply", "nowhere"],     # nowhere
                    "cache_result": 1},                  # int, not bool
            "multiply": {"positional_args": [13, 4],
                         "default_args": {"c": "$divide.output"},  # later
                         "next": "divide",
                         "cache_result": False,
                         "retries": 3},                  # unknown step field
            "divide": {"positional_args": ["$multiply.output", 20],
                       "next": "", "cache_result": True},  # default_args missing
            "loop": step("loop"),                        # cycle + unreachable
            "square": step(""),                          # unregistered + unr.
        },
    }
    problems = wfl.validate(wf, REGISTRY)
    expected = [
        ("workflow", "id", "must be"),
        ("workflow", "owner", "unknown"),
        ("add", "next", "'nowhere'"),
        ("add", "cache_result", "must be"),
        ("add", "default_args", "'ghost'"),
        ("multiply", "retries", "unknown"),
        ("multiply", "default_args", "'divide'", "does not run before"),
        ("divide", "default_args", "missing"),
        ("loop", "next", "cycle"),
        ("loop", "entry_function", "unreachable"),
        ("square", "entry_function", "unreachable"),
    ]
    for where, field, *words in expected:
        problem_about(problems, where, field, *words)
    assert any(x.startswith("step 'add':") and "do not fit" in x
               for x in problems), problems
    assert any(x.startswith("step 'square':") and "not registered" in x
               for x in problems), problems
    assert any(x.startswith("step 'loop':") and "not registered" in x
               for x in problems), problems
    assert len(problems) == len(set(problems)) >= len(expected) + 3


# ----- the Run state ------------------------------------------------------------------

def test_run_chain_order():
    run = wfl.Run(original())
    assert run.id == "abc1234"
    assert run.finals == ["divide"]
    assert run.ready() == ["add"]
    assert run.ready() == []             # started steps are not ready again
    assert not run.finished
    run.done("add", b"41")
    assert run.ready() == ["multiply"]
    run.done("multiply", b"2132")
    assert run.ready() == ["divide"]
    assert not run.finished
    run.done("divide", b"106.6")
    assert run.ready() == []
    assert run.finished
    assert run.outputs == {"add": b"41", "multiply": b"2132",
                           "divide": b"106.6"}


def fan_workflow():
    return workflow("src",
                    src=step(["left", "right", "side"]),
                    left=step("join", args=["$src.output"]),
                    right=step("join", args=["$src.output"]),
                    side=step(""),
                    join=step("", args=["$left.output", "$right.output"]))


def test_run_fan_out_fan_in_order():
    wf = fan_workflow()
    assert wfl.validate(wf) == []
    run = wfl.Run(wf)
    assert sorted(run.finals) == ["join", "side"]
    assert run.ready() == ["src"]
    run.done("src", b"s")
    assert sorted(run.ready()) == ["left", "right", "side"]
    run.done("left", b"l")
    assert run.ready() == []             # join still waits for right
    run.done("side", b"x")
    assert run.ready() == []
    assert not run.finished
    run.done("right", b"r")
    assert run.ready() == ["join"]
    assert not run.finished
    run.done("join", b"j")
    assert run.finished and run.ready() == []


def test_run_fan_in_from_different_depths():
    # join waits for a (depth 1) and for c (depth 3)
    wf = workflow("a", a=step(["b", "join"]), b=step("c"), c=step("join"),
                  join=step(""))
    assert wfl.validate(wf) == []
    run = wfl.Run(wf)
    assert run.ready() == ["a"]
    run.done("a", b"")
    assert run.ready() == ["b"]
    run.done("b", b"")
    assert run.ready() == ["c"]
    run.done("c", b"")
    assert run.ready() == ["join"]


# ----- step payloads ------------------------------------------------------------------------

def test_step_payload_without_references():
    run = wfl.Run(original())
    run.ready()
    fields, parts = run.step_payload("add")
    assert fields["refs"] == []
    payload = b"".join(parts)
    assert fields["sizes"] == [len(payload)]
    head, blobs = wfl.split_step_payload(fields, payload)
    assert head == {"args": [5, 10], "kwargs": {"c": 26}}
    assert blobs == {}


def test_step_payload_round_trip_with_outputs():
    wf = workflow("src",
                  src=step(["left", "right"]),
                  left=step("join"),
                  right=step("join"),
                  join=step("", args=["$left.output", [1, "$right.output"]],
                            kwargs={"both": {"l": "$left.output",
                                             "src": ["$src.output"]}}))
    run = wfl.Run(wf)
    outputs = {"src": {"n": 3}, "left": [1.5, "x"], "right": b"\x00\xff" * 10}
    for name in ("src", "left", "right"):
        run.done(name, ser.dumps(outputs[name]))
    fields, parts = run.step_payload("join")
    assert sorted(fields["refs"]) == ["left", "right", "src"]
    assert len(parts) == 4
    payload = b"".join(parts)
    assert sum(fields["sizes"]) == len(payload)

    head, blobs = wfl.split_step_payload(fields, payload)
    assert head == {"args": ["$left.output", [1, "$right.output"]],
                    "kwargs": {"both": {"l": "$left.output",
                                        "src": ["$src.output"]}}}
    assert {k: bytes(v) for k, v in blobs.items()} == {
        name: ser.dumps(outputs[name]) for name in outputs}

    # what the Worker does with it
    meta = dict(fields, f="join-id")
    args, kwargs = call_arguments(meta, payload)
    assert args == [[1.5, "x"], [1, b"\x00\xff" * 10]]
    assert kwargs == {"both": {"l": [1.5, "x"], "src": [{"n": 3}]}}


def test_worker_arguments_of_a_plain_call():
    payload = ser.dumps(((1, 2), {"c": 3}))
    assert call_arguments({"f": "x"}, payload) == ((1, 2), {"c": 3})


@pytest.mark.parametrize("meta", [
    {"refs": ["a"], "sizes": [5]},          # one size missing
    {"refs": [], "sizes": [3]},             # too short
    {"refs": [], "sizes": [100]},           # too long
    {"refs": ["a"], "sizes": [2, 2, 1]},    # one size too many
])
def test_split_step_payload_rejects_sizes_that_do_not_add_up(meta):
    with pytest.raises(ValueError):
        wfl.split_step_payload(meta, b'{"a":1}')


# ----- substitution ----------------------------------------------------------------------------

def test_substitute_in_nested_lists_and_dicts():
    value = {"a": ["$x.output", {"b": "$y.output", "c": [["$x.output"]]}],
             "plain": "text", "n": 5, "none": None,
             "unknown": "$z.output", "not_a_ref": "total $x.output"}
    outputs = {"x": [1, 2], "y": {"k": "v"}}
    assert wfl.substitute(value, outputs) == {
        "a": [[1, 2], {"b": {"k": "v"}, "c": [[[1, 2]]]}],
        "plain": "text", "n": 5, "none": None,
        "unknown": "$z.output", "not_a_ref": "total $x.output"}
    assert value["a"][0] == "$x.output"      # the input is not modified


def test_substitute_keeps_falsy_outputs():
    outputs = {"zero": 0, "empty": "", "none": None}
    assert wfl.substitute(["$zero.output", "$empty.output", "$none.output"],
                          outputs) == [0, "", None]


def test_refs_in_finds_each_reference_once_in_order():
    value = [{"a": "$b.output"}, ["$a.output", "$b.output"], "$c.outputx"]
    assert wfl.refs_in(value) == ["b", "a"]
