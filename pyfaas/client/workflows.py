"""Workflows from the client side: reading a workflow file, running one.

A mixin of :class:`pyfaas.client.client.Client` (it uses the client's request
plumbing and function listing) plus :func:`load_workflow`. Validation rules
and the format are in :mod:`pyfaas.workflow`; the run itself happens on the
Director (:mod:`pyfaas.director.workflows`).
"""

import os

from ..wire import protocol as p
from .. import serialization as ser
from .. import workflow as wfl
from ..errors import (PyFaaSChainedExecutionError, PyFaaSTimeoutError,
                     PyFaaSWorkflowValidationError)


class WorkflowCalls:
    """``Client.chain_exec``."""

    def chain_exec(self, workflow, timeout=None, validate=True):
        """Run a workflow and return its output.

        ``workflow`` is a dict, a JSON string, or the path of a JSON file
        (a ``pathlib.Path``, or a str naming an existing file).

        Returns:
            the final step's output, or ``{step: output}`` when the workflow
            has several final steps.

        Raises:
            PyFaaSWorkflowValidationError: the workflow is malformed; its
                ``problems`` lists every problem (checked here, and again by
                the Director).
            PyFaaSChainedExecutionError: a step failed (``step``,
                ``workflow_id``, ``cause``, remote type and traceback).
            PyFaaSTimeoutError: the whole workflow took longer than
                ``timeout`` (default ``receive_timeout_s``); it is cancelled.
        """
        if isinstance(workflow, os.PathLike) or (
                isinstance(workflow, str) and not workflow.lstrip().startswith(
                    "{") and os.path.isfile(workflow)):
            workflow = load_workflow(os.fspath(workflow))
        wf, problems = wfl.parse(workflow)
        if validate and not problems:
            registry = {info["name"]: info.get("params")
                        for info in self.list().values()}
            problems = wfl.validate(wf, registry)
        if problems:
            raise PyFaaSWorkflowValidationError(
                "workflow %r is invalid (%d problem(s)):\n  - %s" % (
                    wf.get("id") if isinstance(wf, dict) else None,
                    len(problems), "\n  - ".join(problems)), problems)
        payload = (workflow.encode("utf-8") if isinstance(workflow, str)
                   else ser.to_json(wf))
        limit = self._channel.reply_limit()
        try:
            frame = self._request(p.CHAIN, {"max": limit} if limit else None,
                                  payload, timeout=timeout,
                                  error_class=PyFaaSChainedExecutionError)
        except PyFaaSTimeoutError as exc:
            raise PyFaaSTimeoutError("workflow %r did not finish in time (it "
                                     "was cancelled): %s" % (wf.get("id"),
                                                             exc))
        meta = frame.meta()
        finals = meta.get("finals", [])
        if len(finals) == 1:
            return ser.loads(frame.payload)
        outputs, pos = {}, 0
        for name, size in zip(finals, meta.get("sizes", [])):
            outputs[name] = ser.loads(frame.payload[pos:pos + size])
            pos += size
        return outputs


def load_workflow(path):
    """Read a workflow JSON file into a dict (structure is not checked here).

    Raises:
        PyFaaSWorkflowValidationError: unreadable file or invalid JSON.
    """
    try:
        with open(path, "r", encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        problem = "%s: cannot read: %s" % (path, exc.strerror or exc)
        raise PyFaaSWorkflowValidationError(problem, [problem])
    wf, problems = wfl.parse(text)
    if problems:
        problems = ["%s: %s" % (path, x) for x in problems]
        raise PyFaaSWorkflowValidationError(problems[0], problems)
    return wf
