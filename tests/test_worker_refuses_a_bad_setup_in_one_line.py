"""A Worker that cannot start says why in one line and exits 2.

Real processes: a Director, and Workers started with a setup that cannot
work; the cluster serves on.
"""

import pytest

from pyfaas.tools.local_cluster import Process

pytestmark = pytest.mark.timeout(60)


def whoami():
    import os
    return os.getpid()


def test_two_workers_cannot_share_a_dump_file(fresh_cluster):
    cl = fresh_cluster(workers=1, persistence=True)
    name, path = cl.worker_config("worker1", persistence=True)  # same dump
    proc = cl.track(Process("second", ["worker", path], cl.workdir))
    assert proc.wait(20) == 2
    out = proc.output().decode(errors="replace")
    assert "dump_file" in out and "another running Worker" in out, out
    assert "Traceback" not in out
    with cl.client() as client:
        client.register(whoami)
        assert client.call("whoami")


def test_a_bad_tls_ca_file_is_a_one_line_config_error(fresh_cluster,
                                                      tmp_path):
    cl = fresh_cluster(workers=0)
    cl.worker_extra = {"security": {"tls": True,
                                    "tls_ca_file": str(tmp_path / "no.pem")}}
    name, path = cl.worker_config("tlsbad")
    proc = cl.track(Process(name, ["worker", path], cl.workdir))
    assert proc.wait(20) == 2
    out = proc.output().decode(errors="replace")
    assert "tls_ca_file" in out and "no.pem" in out and \
        "Traceback" not in out, out
