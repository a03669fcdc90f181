"""Workflows from the client side: what a CHAIN request carries and what its
reply holds.

Owns :func:`load_workflow` (a workflow file into a dict),
:func:`workflow_request` (a workflow given as a dict, JSON text or a file,
checked, into the payload of a CHAIN request) and :func:`workflow_outputs`
(the reply into the workflow's output). It sends nothing:
:meth:`pyfaas.client.client.Client.chain_exec` does, and lends it its
function listing for the checks. Validation rules and the format are in
:mod:`pyfaas.workflow`; the run itself happens on the Director
(:mod:`pyfaas.director.workflows`).
"""

import os

from .. import serialization as ser
from .. import workflow as wfl
from ..errors import (PyFaaSDeserializationError,
                      PyFaaSFunctionListingError,
                      PyFaaSFunctionSetRegistrationCheckError,
                      PyFaaSWorkflowLoadingError,
                      PyFaaSWorkflowValidationError)


def workflow_request(workflow, listing=None):
    """The id of ``workflow`` and the payload of the CHAIN request running it.

    Args:
        workflow: a dict, a JSON string, or the path of a JSON file (a
            ``pathlib.Path``, or a str naming an existing file).
        listing: None, or a callable returning the registered functions
            (as :meth:`pyfaas.Client.list` does) to check the steps
            against; called only when the workflow itself is well formed.
            A workflow whose only problem is functions not listed is sent
            anyway: the Director has the last word (it may be waiting for
            its Workers to announce them after a restart).

    Returns:
        tuple: ``(workflow id, payload bytes)``.

    Raises:
        PyFaaSWorkflowValidationError: the workflow is malformed; its
            ``problems`` lists every problem.
        PyFaaSWorkflowLoadingError: a file named cannot be loaded.
        PyFaaSFunctionSetRegistrationCheckError: ``listing`` failed, so
            the steps' functions could not be checked.
    """
    if isinstance(workflow, os.PathLike) or (
            isinstance(workflow, str) and not workflow.lstrip().startswith(
                "{") and os.path.isfile(workflow)):
        workflow = load_workflow(os.fspath(workflow))
    wf, problems = wfl.parse(workflow)
    if listing is not None and not problems:
        try:
            listed = listing()
        except PyFaaSFunctionListingError as exc:
            raise PyFaaSFunctionSetRegistrationCheckError(
                "cannot check that the functions of workflow %r are "
                "registered: %s" % (wf.get("id"), exc)) from exc
        registry = {info["name"]: info.get("params")
                    for info in listed.values()}
        problems = wfl.validate(wf, registry)
        steps = wf.get("functions") if isinstance(wf, dict) else None
        unknown = {name: None for name in steps if name not in registry} \
            if isinstance(steps, dict) else {}
        if problems and unknown and \
                not wfl.validate(wf, dict(registry, **unknown)):
            # Only functions the Director does not list (yet): it judges,
            # and right after its restart it waits for its Workers to
            # announce them (startup_grace_ms) instead of failing at once.
            problems = []
    if problems:
        raise PyFaaSWorkflowValidationError(
            "workflow %r is invalid (%d problem(s)):\n  - %s" % (
                wf.get("id") if isinstance(wf, dict) else None,
                len(problems), "\n  - ".join(problems)), problems)
    payload = (workflow.encode("utf-8") if isinstance(workflow, str)
               else ser.to_json(wf))
    return wf.get("id"), payload


def workflow_outputs(frame):
    """The output a CHAIN reply carries: the final step's output, or
    ``{step: output}`` when the workflow has several final steps.

    Raises:
        PyFaaSDeserializationError: an output cannot be unpickled here.
    """
    meta = frame.meta()
    finals = meta.get("finals", [])
    if len(finals) == 1:
        return _loads(frame.payload, finals[0])
    outputs, pos = {}, 0
    for name, size in zip(finals, meta.get("sizes", [])):
        outputs[name] = _loads(frame.payload[pos:pos + size], name)
        pos += size
    return outputs


def _loads(data, step):
    try:
        return ser.loads(data)
    except Exception as exc:
        raise PyFaaSDeserializationError(
            "the output of workflow step %r cannot be unpickled here: %s: %s"
            % (step, type(exc).__name__, exc)) from None


def load_workflow(path):
    """Read a workflow JSON file into a dict (structure is not checked here).

    Raises:
        PyFaaSWorkflowLoadingError (a PyFaaSWorkflowValidationError): no
            path, an unreadable file, or not a JSON object.
    """
    if not path:
        problem = "no workflow file given (path is %r)" % (path,)
        raise PyFaaSWorkflowLoadingError(problem, [problem])
    try:
        with open(path, "r", encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        problem = "%s: cannot read: %s" % (path, getattr(exc, "strerror",
                                                         None) or exc)
        raise PyFaaSWorkflowLoadingError(problem, [problem]) from None
    wf, problems = wfl.parse(text)
    if problems:
        problems = ["%s: %s" % (path, x) for x in problems]
        raise PyFaaSWorkflowLoadingError(problems[0], problems)
    return wf
