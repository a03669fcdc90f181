"""Workflows: validation, step scheduling and step-call payloads. Pure.

Owns the workflow format (compatible with the original PyFaaS chained
execution guide, extended to DAGs), its validation with every problem
listed, the run state that says which steps are ready (fan-out: ``next`` is a
list; fan-in: a step runs once every step naming it in ``next`` finished),
and the byte layout of a step call, which lets the Director build a step's
arguments from earlier steps' outputs without ever unpickling them.

Workflow::

    {"id": "abc1234", "entry_function": "add",
     "functions": {"add": {"positional_args": [5, 10],
                           "default_args": {"c": 26},
                           "next": "multiply", "cache_result": true}, ...}}

A string ``"$NAME.output"`` anywhere in a step's arguments (nested lists and
objects included) stands for the output of step NAME, which must run before
the step (be one of its ancestors).

Step call payload (CALL frames whose meta has ``refs``)::

    [JSON {"args": [...], "kwargs": {...}}][output of refs[0]][output of refs[1]]...

with meta ``sizes`` giving the byte length of each part. The Worker parses
the JSON, unpickles each referenced output and substitutes it.
"""

import json
import re

STEP_FIELDS = {"positional_args": list, "default_args": dict,
               "next": (str, list), "cache_result": bool}
TOP_FIELDS = {"id": str, "entry_function": str, "functions": dict}
REF = re.compile(r"^\$([^.$]+)\.output$")
_TYPE_NAMES = {list: "a list", dict: "an object", str: "a string",
               bool: "a boolean", (str, list): "a string or a list of strings"}


def parse(workflow):
    """A workflow dict from a dict or a JSON string.

    Returns:
        (dict or None, list of problems)
    """
    if isinstance(workflow, (bytes, bytearray)):
        workflow = workflow.decode("utf-8", "replace")
    if isinstance(workflow, str):
        try:
            workflow = json.loads(workflow)
        except ValueError as exc:
            return None, ["workflow: not valid JSON: %s" % exc]
    if not isinstance(workflow, dict):
        return None, ["workflow: expected a JSON object, got %s"
                      % type(workflow).__name__]
    return workflow, []


def next_steps(step):
    """The names in a step's ``next`` as a list ("" -> [])."""
    nxt = step.get("next", "")
    if isinstance(nxt, str):
        return [nxt] if nxt else []
    return [n for n in nxt if isinstance(n, str) and n]


def refs_in(value, found=None):
    """Step names referenced as ``$NAME.output`` anywhere in ``value``."""
    found = [] if found is None else found
    if isinstance(value, str):
        m = REF.match(value)
        if m and m.group(1) not in found:
            found.append(m.group(1))
    elif isinstance(value, list):
        for item in value:
            refs_in(item, found)
    elif isinstance(value, dict):
        for item in value.values():
            refs_in(item, found)
    return found


def _check_fields(problems, where, obj, fields):
    for key, kind in fields.items():
        if key not in obj:
            problems.append("%s: field %r is missing (expected %s)"
                            % (where, key, _TYPE_NAMES[kind]))
        elif not isinstance(obj[key], kind) or (
                kind is not bool and isinstance(obj[key], bool)):
            problems.append("%s: field %r must be %s, got %s" % (
                where, key, _TYPE_NAMES[kind], json.dumps(obj[key])[:60]))
    for key in obj:
        if key not in fields:
            problems.append("%s: unknown field %r (valid: %s)"
                            % (where, key, ", ".join(fields)))


def validate(workflow, registry=None):
    """Every problem of a workflow, as a list of one-line strings.

    Args:
        workflow: a dict (see :func:`parse`).
        registry: ``{function name: params description or None}`` of the
            registered functions; None checks the structure only.
    """
    problems = []
    _check_fields(problems, "workflow", workflow, TOP_FIELDS)
    steps = workflow.get("functions")
    if not isinstance(steps, dict):
        return problems
    if not steps:
        problems.append("workflow: field 'functions' has no steps")
        return problems
    good = {}
    for name, step in steps.items():
        where = "step %r" % name
        if not isinstance(step, dict):
            problems.append("%s: expected an object, got %s"
                            % (where, json.dumps(step)[:60]))
            continue
        _check_fields(problems, where, step, STEP_FIELDS)
        nxt = step.get("next")
        if isinstance(nxt, list):
            for item in nxt:
                if not isinstance(item, str) or not item:
                    problems.append("%s: field 'next' lists %s; expected "
                                    "step names" % (where, json.dumps(item)))
        for target in next_steps(step) if isinstance(nxt, (str, list)) else []:
            if target not in steps:
                problems.append("%s: field 'next' points to unknown step %r"
                                % (where, target))
        good[name] = step
    edges = {n: [t for t in next_steps(s) if t in steps]
             if isinstance(s.get("next"), (str, list)) else []
             for n, s in good.items()}
    entry = workflow.get("entry_function")
    if isinstance(entry, str) and entry not in steps:
        problems.append("workflow: field 'entry_function' names %r, which is "
                        "not among the steps (%s)" % (entry, ", ".join(steps)))
    problems.extend(_cycles(edges))
    if isinstance(entry, str) and entry in steps:
        reachable = _reach(edges, entry)
        for name in steps:
            if name not in reachable:
                problems.append("step %r: unreachable from entry_function %r"
                                % (name, entry))
    if good and not any(not edges.get(n) and isinstance(s.get("next"),
                                                        (str, list))
                        for n, s in good.items()):
        problems.append("workflow: no final step (one whose 'next' is \"\")")
    ancestors = _ancestors(edges)
    for name, step in good.items():
        for field in ("positional_args", "default_args"):
            for ref in refs_in(step.get(field)):
                if ref not in steps:
                    problems.append("step %r: field %r references unknown step"
                                    " %r" % (name, field, ref))
                elif ref not in ancestors.get(name, ()):
                    problems.append("step %r: field %r references step %r, "
                                    "which does not run before it"
                                    % (name, field, ref))
    if registry is not None:
        problems.extend(_check_registry(good, registry))
    return problems


def _check_registry(steps, registry):
    from .serialization import check_arguments, signature_text
    problems = []
    for name, step in steps.items():
        if name not in registry:
            problems.append("step %r: function %r is not registered"
                            % (name, name))
            continue
        params = registry[name]
        args = step.get("positional_args")
        kwargs = step.get("default_args")
        if params is None or not isinstance(args, list) or not isinstance(
                kwargs, dict):
            continue
        why = check_arguments(params, args, kwargs)
        if why is not None:
            problems.append("step %r: fields 'positional_args' and "
                            "'default_args' do not fit %s%s: %s"
                            % (name, name, signature_text(params), why))
    return problems


def _reach(edges, start):
    seen, stack = set(), [start]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        stack.extend(edges.get(node, ()))
    return seen


def _cycles(edges):
    """One problem per cycle found (DFS with colours), naming its steps."""
    problems, colour, path = [], {}, []

    def visit(node):
        colour[node] = 1
        path.append(node)
        for nxt in edges.get(node, ()):
            if colour.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt]
                problems.append("step %r: field 'next' closes a cycle: %s"
                                % (node, " -> ".join(cycle)))
            elif colour.get(nxt) is None:
                visit(nxt)
        path.pop()
        colour[node] = 2

    for node in edges:
        if colour.get(node) is None:
            visit(node)
    return problems


def _ancestors(edges):
    preds = predecessors(edges)
    return {node: _reach(preds, node) - {node} for node in edges}


def predecessors(edges):
    """``{step: [steps whose next names it]}``."""
    preds = {node: [] for node in edges}
    for node, targets in edges.items():
        for target in targets:
            preds.setdefault(target, []).append(node)
    return preds


class Run:
    """Which steps of a valid workflow are ready, running, done or failed."""

    def __init__(self, workflow):
        self.workflow = workflow
        self.id = workflow["id"]
        self.steps = workflow["functions"]
        edges = {n: next_steps(s) for n, s in self.steps.items()}
        self.finals = [n for n, t in edges.items() if not t]
        self._waiting_on = {n: set(p) for n, p in predecessors(edges).items()}
        self._edges = edges
        self.started = set()
        self.outputs = {}     # step -> pickled output bytes
        self.failed = None

    def ready(self):
        """Steps whose predecessors are all done and that have not started."""
        out = [n for n, preds in self._waiting_on.items()
               if not preds and n not in self.started]
        self.started.update(out)
        return out

    def done(self, step, output):
        self.outputs[step] = output
        for target in self._edges[step]:
            self._waiting_on[target].discard(step)

    @property
    def finished(self):
        return all(f in self.outputs for f in self.finals)

    def step_payload(self, step):
        """``(meta fields, payload parts)`` of the call for ``step``."""
        spec = self.steps[step]
        head = json.dumps({"args": spec["positional_args"],
                           "kwargs": spec["default_args"]},
                          separators=(",", ":")).encode("utf-8")
        refs = refs_in([spec["positional_args"], spec["default_args"]])
        parts = [head] + [self.outputs[r] for r in refs]
        return {"refs": refs, "sizes": [len(x) for x in parts]}, parts


def split_step_payload(meta, payload):
    """The JSON head and the referenced outputs' bytes of a step call.

    Raises:
        ValueError: sizes that do not add up to the payload.
    """
    sizes = meta.get("sizes") or []
    refs = meta.get("refs") or []
    if len(sizes) != len(refs) + 1 or sum(sizes) != len(payload):
        raise ValueError("step payload sizes %r do not match %d bytes"
                         % (sizes, len(payload)))
    view = memoryview(payload)
    parts, pos = [], 0
    for size in sizes:
        parts.append(view[pos:pos + size])
        pos += size
    head = json.loads(bytes(parts[0]).decode("utf-8"))
    return head, dict(zip(refs, parts[1:]))


def substitute(value, outputs):
    """``value`` with every ``"$NAME.output"`` replaced by ``outputs[NAME]``."""
    if isinstance(value, str):
        m = REF.match(value)
        if m and m.group(1) in outputs:
            return outputs[m.group(1)]
        return value
    if isinstance(value, list):
        return [substitute(v, outputs) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, outputs) for k, v in value.items()}
    return value


def template(steps=3):
    """A skeleton workflow of ``steps`` chained steps."""
    names = ["step%d" % (i + 1) for i in range(steps)]
    funcs = {}
    for i, name in enumerate(names):
        args = [1, 2] if i == 0 else ["$%s.output" % names[i - 1]]
        funcs[name] = {"positional_args": args, "default_args": {},
                       "next": names[i + 1] if i + 1 < steps else "",
                       "cache_result": False}
    return {"id": "my-workflow", "entry_function": names[0],
            "functions": funcs}
