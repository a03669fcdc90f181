"""``python -m pyfaas workflow {template,validate,run}``."""

import json
import sys

from .. import workflow as wfl
from ..errors import PyFaaSWorkflowValidationError


def run_workflow_command(args):
    """Carry out one workflow sub-command; return the exit code."""
    if args.action == "template":
        if args.steps < 1:
            print("pyfaas: error: --steps must be at least 1", file=sys.stderr)
            return 2
        print(json.dumps(wfl.template(args.steps), indent=2))
        return 0
    from ..client.client import Client, default_client
    from ..client.workflows import load_workflow
    try:
        workflow = load_workflow(args.file)
    except PyFaaSWorkflowValidationError as exc:
        print("pyfaas: error: %s" % exc, file=sys.stderr)
        return 2
    if args.action == "validate":
        problems = wfl.validate(workflow)
        if problems:
            print("%s: %d problem(s):" % (args.file, len(problems)))
            for problem in problems:
                print("  - " + problem)
            return 1
        print("%s: valid (structure only: functions and signatures are "
              "checked when it runs)" % args.file)
        return 0
    client = Client.from_config(args.config) if args.config \
        else default_client()
    with client:
        try:
            result = client.chain_exec(workflow, timeout=args.timeout)
        except PyFaaSWorkflowValidationError as exc:
            print("%s: %d problem(s):" % (args.file, len(exc.problems)))
            for problem in exc.problems:
                print("  - " + problem)
            return 1
    try:
        print(json.dumps(result))
    except (TypeError, ValueError):
        print(repr(result))
    return 0
