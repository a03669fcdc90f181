"""``python -m pyfaas demo``: a whole cluster on loopback in a few seconds.

Starts a Director and two Workers as subprocesses on 127.0.0.1 (free ports,
a temporary directory), registers a few functions, calls them (one raises,
to show the remote traceback), prints what happens, and stops everything.
"""

import shutil
import time

from ..errors import PyFaaSFunctionExecutionError
from .local_cluster import LocalCluster
from ..security import new_token


def _add(a, b, c=12):
    return a + b + c


def _where(label):
    import os
    import socket
    return "%s ran in pid %d on %s" % (label, os.getpid(), socket.gethostname())


def _divide(a, b):
    return a / b


def run_demo(workers=2):
    """Run the demo; return the exit code."""
    start = time.monotonic()
    cluster = LocalCluster(token=new_token())
    try:
        cluster.start(workers=workers, log_level="warning")
        print("cluster: director on 127.0.0.1:%d, %d workers, ready in %.2f s"
              " (authenticated with a random cluster token)"
              % (cluster.port, workers, time.monotonic() - start))
        client = cluster.client()
        print("workers:", ", ".join(client.worker_ids()))
        fid = client.register(_add, name="add")
        print("registered add -> id %s" % fid)
        client.register(_where, name="where")
        client.register(_divide, name="divide")
        scale = 3
        client.register(lambda x: x * scale, name="triple")
        print("add(5, 6, c=56) =", client.exec("add", [5, 6], {"c": 56}))
        print("triple(14) =", client.call("triple", 14))
        for i in range(workers):
            print(client.call("where", "call %d" % (i + 1)))
        print("functions:", ", ".join(
            "%s%s" % (f["name"], f["signature"])
            for f in client.list().values()))
        try:
            client.call("divide", 1, 0)
        except PyFaaSFunctionExecutionError as exc:
            print("divide(1, 0) raised remotely, as expected:")
            print("  %s: %s" % (exc.remote_type, exc.remote_message))
            print("  " + exc.remote_traceback.strip().replace("\n", "\n  "))
        print("done in %.2f s" % (time.monotonic() - start))
        return 0
    finally:
        cluster.stop()
        shutil.rmtree(cluster.workdir, ignore_errors=True)
