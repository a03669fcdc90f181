"""Command-line tools: ``python -m pyfaas COMMAND`` (:mod:`.cli`).

The demo, ``status``, ``bench`` (with its floor), the workflow CLI, and the
local cluster the demo, bench and tests start on 127.0.0.1. They use the
other packages; nothing else imports them.
"""
