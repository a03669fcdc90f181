"""Worker queries without a Worker id act on the only Worker, or say which.

``Client.worker_info()``, ``cache_dump()`` and ``kill_worker()`` (and the
functional ``pyfaas_get_worker_info()``, ``pyfaas_get_cache_dump()`` and
``pyfaas_kill_worker()``, the original's documented calls) without an id:
with exactly one live Worker they act on it; otherwise each raises its own
typed error, whose message lists the live Worker ids, and nothing is done.
"""

import pytest

from helpers import wait_until
from pyfaas.client import api
from pyfaas.errors import (PyFaaSCacheDumpingError, PyFaaSWorkerInfoError,
                           PyFaaSWorkerKillError)

pytestmark = pytest.mark.timeout(60)

WITHOUT_AN_ID = [("worker_info", PyFaaSWorkerInfoError),
                 ("cache_dump", PyFaaSCacheDumpingError),
                 ("kill_worker", PyFaaSWorkerKillError)]


def double(x):
    return 2 * x


def test_with_one_worker_they_act_on_it(fresh_cluster):
    cluster = fresh_cluster(workers=1)
    (worker,) = cluster.workers.values()
    client = cluster.client()
    (wid,) = client.worker_ids()
    client.register(double)
    assert client.exec("double", [21], save_in_cache=True) == 42

    assert client.worker_info()["identity"]["worker_id"] == wid
    dump = client.cache_dump()
    assert dump["worker_id"] == wid and dump["size"] == 1
    client.kill_worker()
    assert worker.wait(15) == 0
    wait_until(lambda: client.worker_ids() == [], 5, "the Worker is listed")


@pytest.fixture(scope="module")
def two_workers(module_cluster_factory):
    return module_cluster_factory(workers=2)


@pytest.fixture(scope="module")
def no_worker(module_cluster_factory):
    return module_cluster_factory(workers=0)


@pytest.mark.parametrize("method, error", WITHOUT_AN_ID,
                         ids=[m for m, _ in WITHOUT_AN_ID])
def test_with_two_workers_each_raises_its_error_naming_them(
        two_workers, method, error):
    client = two_workers.client()
    ids = client.worker_ids()
    with pytest.raises(error) as info:
        getattr(client, method)()
    message = str(info.value)
    assert "2 are live" in message and all(w in message for w in ids)
    assert sorted(client.worker_ids()) == sorted(ids)  # nobody was stopped
    client.register(double)
    assert client.call("double", 4) == 8


@pytest.mark.parametrize("function, error", [
    (api.pyfaas_get_worker_info, PyFaaSWorkerInfoError),
    (api.pyfaas_get_cache_dump, PyFaaSCacheDumpingError),
    (api.pyfaas_kill_worker, PyFaaSWorkerKillError)],
    ids=["pyfaas_get_worker_info", "pyfaas_get_cache_dump",
         "pyfaas_kill_worker"])
def test_with_no_worker_the_functional_api_says_none_is_live(
        no_worker, function, error):
    api.pyfaas_config(no_worker.client_config())
    try:
        with pytest.raises(error, match="none is live"):
            function()
    finally:
        api.pyfaas_close()
