"""A PyFaaS client program driven over its stdin, for the netns test bed.

Run inside a host of the test bed (``ip netns exec NS python
netns_agent.py``; see netns_bed.py): it reads one JSON request per line on
stdin and writes one JSON answer per line on stdout, so a test in the
machine's own namespace drives clients that live on another "host" and
never opens a socket itself. Each request runs on a thread of its own, so
a test can start a long call and go on with others.

Request: ``{"id": n, "op": NAME, "config": client TOML path, ...}``.
Answer: ``{"id": n, "ok": true, "value": ..., "t0": ..., "t1": ...}`` or
``{"id": n, "ok": false, "error": class name, "message": str, "t0", "t1"}``
where ``t0`` and ``t1`` are ``time.monotonic()`` when the operation began
and ended (the clock is the machine's, shared by every namespace).

The functions it registers are defined here: the agent runs as
``__main__``, so cloudpickle sends them by value and the Workers need no
copy of this file. They report the host they ran on from
``$PYFAAS_TEST_HOST``, which the test bed sets for every process.
"""

import hashlib
import json
import os
import sys
import threading
import time

from pyfaas import Client


def where():
    import os
    return os.environ.get("PYFAAS_TEST_HOST", "?")


def nap(seconds):
    import os
    import time
    time.sleep(seconds)
    return os.environ.get("PYFAAS_TEST_HOST", "?")


def echo(blob):
    return blob


def digest(blob):
    import hashlib
    return hashlib.sha256(blob).hexdigest()


def add(a, b, c=12):
    return a + b + c


def multiply(a, b, c=45):
    return a * b * c


def divide(a, b):
    return a / b


FUNCTIONS = {f.__name__: f for f in (where, nap, echo, digest, add, multiply,
                                     divide)}


def pattern(size):
    """``size`` bytes that are not all alike (a lost chunk would show)."""
    block = bytes(range(256)) * 4096  # 1 MiB
    return (block * (size // len(block) + 1))[:size]


class Agent:
    def __init__(self):
        self.clients = {}
        self.lock = threading.Lock()
        self.out = threading.Lock()

    def client(self, config):
        with self.lock:
            if config not in self.clients:
                self.clients[config] = Client.from_config(config)
            return self.clients[config]

    # ----- operations: each returns a JSON-ready value -----------------------

    def op_register(self, client, names):
        for name in names:
            client.register(FUNCTIONS[name])
        return sorted(names)

    def op_call(self, client, name, args=(), kwargs=None, timeout=None):
        return client.exec(name, list(args), kwargs or {}, timeout=timeout)

    def op_echo(self, client, size, timeout=None):
        """A ``size``-byte argument sent and returned whole: its digest."""
        blob = pattern(size)
        back = client.exec("echo", [blob], timeout=timeout)
        return {"same": back == blob, "size": len(back),
                "sha256": hashlib.sha256(back).hexdigest()}

    def op_digest(self, client, size, timeout=None):
        return client.exec("digest", [pattern(size)], timeout=timeout)

    def op_chain(self, client, path):
        return client.chain_exec(path)

    def op_workers(self, client):
        return client.workers()

    def op_wait_for_workers(self, client, count, timeout):
        return client.wait_for_workers(count, timeout)

    def op_ping(self, client):
        return client.ping()

    def op_close(self, client):
        client.close()
        with self.lock:
            self.clients = {k: v for k, v in self.clients.items()
                            if v is not client}
        return True

    # ----- plumbing ----------------------------------------------------------

    def handle(self, request):
        rid = request.pop("id")
        op = getattr(self, "op_" + request.pop("op"))
        t0 = time.monotonic()
        try:
            value = op(self.client(request.pop("config")), **request)
            answer = {"id": rid, "ok": True, "value": value}
        except Exception as exc:
            answer = {"id": rid, "ok": False, "error": type(exc).__name__,
                      "message": str(exc),
                      "kinds": [c.__name__ for c in type(exc).__mro__]}
        answer.update(t0=t0, t1=time.monotonic())
        line = json.dumps(answer, default=repr)
        with self.out:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def serve(self):
        for line in sys.stdin:
            if line.strip():
                threading.Thread(target=self.handle, args=(json.loads(line),),
                                 daemon=True).start()
        for client in list(self.clients.values()):
            client.close()


if __name__ == "__main__":
    os.environ.pop("PYFAAS_CONFIG", None)
    Agent().serve()
