"""Code written for the original py-faas runs on PyFaaS unchanged.

The code in these tests is written as the original's users write it: the
functions imported from ``pyfaas``, the exceptions from
``pyfaas.exceptions`` with a star import, the original's keyword names
(``file_path``, ``func_code``, ``override``, ``func_id``,
``func_positional_args_list``, ``func_default_args_list``, ``func_name``,
``workflow_file_path``, ``json_workflow``), its ``try``/``except`` clauses,
its return values (``pyfaas_unregister`` returns 1), functions with the
type annotations it required, and the workflow of its chained-execution
guide. It runs against a real local cluster of one Worker: the original's
documentation calls ``pyfaas_get_worker_info()``,
``pyfaas_get_cache_dump()`` and ``pyfaas_kill_worker()`` without an id.
"""

import json
import sys
import types

import pytest

from pyfaas import (pyfaas_chain_exec, pyfaas_close, pyfaas_config,
                    pyfaas_exec, pyfaas_get_cache_dump, pyfaas_get_stats,
                    pyfaas_get_worker_ids, pyfaas_get_worker_info,
                    pyfaas_kill_worker, pyfaas_list, pyfaas_load_workflow,
                    pyfaas_ping, pyfaas_register, pyfaas_unregister)
from pyfaas.exceptions import *  # noqa: F401,F403 - as the original's users

from helpers import reserve_port, wait_until
from pyfaas.tools.local_cluster import client_sections, write_toml

pytestmark = pytest.mark.timeout(60)

# Every exception class of the original's pyfaas/exceptions.py.
ORIGINAL_EXCEPTIONS = [
    "PyFaaSError", "PyFaaSConfigError", "PyFaaSNetworkError",
    "PyFaaSFunctionRegistrationError", "PyFaaSFunctionUnregistrationError",
    "PyFaaSFunctionListingError", "PyFaaSFunctionExecutionError",
    "PyFaaSWorkerInfoError", "PyFaaSCacheDumpingError",
    "PyFaaSStatisticsRetrievalError",
    "PyFaaSFunctionSetRegistrationCheckError",
    "PyFaaSWorkflowValidationError", "PyFaaSTimeoutError",
    "PyFaaSDeserializationError", "PyFaaSParameterMismatchError",
    "PyFaaSWorkflowLoadingError", "PyFaaSPingingError",
    "PyFaaSWorkerIDsRetrievalError", "PyFaaSChainedExecutionError",
]

# The workflow of the original's chained-execution guide, as it writes it.
GUIDE_WORKFLOW = """
{
    "id": "abc1234",
    "entry_function": "add",
    "functions": {
        "add": {
            "positional_args": [5, 10],
            "default_args": {
                "c": 26
            },
            "next": "multiply",
            "cache_result": true
        },
        "multiply": {
            "positional_args": [13, 4],
            "default_args": {
                "c": "$add.output"
            },
            "next": "divide",
            "cache_result": false
        },
        "divide": {
            "positional_args": ["$multiply.output", 20],
            "default_args": {},
            "next": "",
            "cache_result": true
        }
    }
}
"""


# ----- functions as the original's users write them --------------------------

def simple_function_1(a: int, b: int, c: int = 12) -> int:
    return a * b + c


def add(a: int, b: int, c: int = 12) -> int:
    return a + b + c


def multiply(a: int, b: int, c: int = 45) -> int:
    return a * b * c


def divide(a: int, b: int) -> float:
    return a / b


def result_only_the_worker_can_unpickle() -> object:
    module = types.ModuleType("only_on_the_worker")
    sys.modules[module.__name__] = module

    class Private:
        pass

    Private.__module__ = module.__name__
    Private.__qualname__ = "Private"
    module.Private = Private
    return Private()


@pytest.fixture(scope="module")
def one_worker(module_cluster_factory):
    return module_cluster_factory(workers=1)


@pytest.fixture(autouse=True)
def configured(one_worker):
    pyfaas_config(file_path=one_worker.client_config())
    yield one_worker
    pyfaas_close()


# ----- the tests ----------------------------------------------------------------

def test_every_original_exception_imports_from_pyfaas_exceptions():
    namespace = globals()
    missing = [name for name in ORIGINAL_EXCEPTIONS if name not in namespace]
    assert not missing
    assert all(issubclass(namespace[name], PyFaaSError)  # noqa: F405
               for name in ORIGINAL_EXCEPTIONS)


def test_register_exec_and_unregister_with_the_original_names():
    func_id = pyfaas_register(func_code=simple_function_1)
    assert isinstance(func_id, str)
    try:
        # Registered already: the same id, as the original answers.
        assert pyfaas_register(simple_function_1, override=True) == func_id
        res = pyfaas_exec(func_id=func_id, func_positional_args_list=[5, 6],
                          func_default_args_list={'c': 56})
        assert res == 86
        assert pyfaas_exec('simple_function_1', [5, 6], {'c': 56}) == 86
        assert pyfaas_exec(func_id, [10, 11], save_in_cache=True) == 122
        assert func_id in pyfaas_list()
        stats = pyfaas_get_stats(func_name='simple_function_1')
        assert isinstance(stats, dict) and isinstance(pyfaas_get_stats(),
                                                      dict)
    finally:
        assert pyfaas_unregister(func_id=func_id) == 1
    try:
        pyfaas_unregister(func_id)
        raise AssertionError("unregistered twice")
    except PyFaaSFunctionUnregistrationError as e:  # noqa: F405
        print(e)


def test_override_replaces_a_function_and_override_false_keeps_it():
    def simple_function_2(d: int) -> float:
        return d + 0.1

    first = pyfaas_register(simple_function_2)

    def simple_function_2(d: int) -> float:  # noqa: F811 - new code
        return d + 0.2

    second = pyfaas_register(simple_function_2, override=True)
    assert second != first
    assert pyfaas_exec('simple_function_2', [1]) == 1.2

    def simple_function_2(d: int) -> float:  # noqa: F811
        return d + 0.3

    assert pyfaas_register(simple_function_2, override=False) == second
    assert pyfaas_register(simple_function_2, False) == second
    assert pyfaas_exec('simple_function_2', [1]) == 1.2
    assert pyfaas_unregister('simple_function_2') == 1


def test_failing_calls_are_caught_by_the_original_except_clauses():
    pyfaas_register(divide)
    pyfaas_register(result_only_the_worker_can_unpickle)
    caught = []
    try:
        pyfaas_exec('divide', 'not-a-list')
    except PyFaaSParameterMismatchError as e:  # noqa: F405
        caught.append(e)
    try:
        pyfaas_exec('divide', [1, 0])
    except PyFaaSFunctionExecutionError as e:  # noqa: F405
        caught.append(e)
    try:
        pyfaas_exec('result_only_the_worker_can_unpickle', [])
    except PyFaaSDeserializationError as e:  # noqa: F405
        caught.append(e)
    assert [type(e).__name__ for e in caught] == [
        "PyFaaSParameterMismatchError", "PyFaaSFunctionExecutionError",
        "PyFaaSDeserializationError"]
    assert "ZeroDivisionError" in str(caught[1])
    assert "only_on_the_worker" in str(caught[2])
    assert pyfaas_unregister('divide') == 1
    assert pyfaas_unregister('result_only_the_worker_can_unpickle') == 1


def test_the_workers_are_seen_without_an_id():
    ids = pyfaas_get_worker_ids()
    assert isinstance(ids, list) and len(ids) == 1
    info = pyfaas_get_worker_info()
    assert {'config', 'functions', 'identity', 'network',
            'system'} <= set(info)
    assert info["identity"]["worker_id"] == ids[0]
    assert pyfaas_get_worker_info(worker_id=ids[0])["identity"][
        "worker_id"] == ids[0]
    assert pyfaas_get_cache_dump()["worker_id"] == ids[0]
    pyfaas_ping()  # the original's only logs the answer


def test_the_workflow_guide_runs_unchanged(tmp_path):
    workflow_file = tmp_path / 'workflow.json'
    workflow_file.write_text(GUIDE_WORKFLOW)
    for f in (add, multiply, divide):
        pyfaas_register(f)
    try:
        json_workflow = pyfaas_load_workflow(
            workflow_file_path=str(workflow_file))
        chain_result = pyfaas_chain_exec(json_workflow=json_workflow)
        assert chain_result == 106.6
        # "can also be provided in string form"
        assert pyfaas_chain_exec(json.dumps(json_workflow)) == 106.6
    finally:
        for name in ('add', 'multiply', 'divide'):
            assert pyfaas_unregister(name) == 1


def test_workflow_errors_are_caught_by_the_original_except_clauses(tmp_path):
    not_json = tmp_path / 'broken.json'
    not_json.write_text('{"id": ')
    for path in (str(tmp_path / 'missing.json'), str(not_json), None):
        try:
            pyfaas_load_workflow(path)
            raise AssertionError("loaded %r" % path)
        except PyFaaSWorkflowLoadingError as e:  # noqa: F405
            print(e)
    try:
        pyfaas_chain_exec({'id': 'wf1'})  # no entry_function, no functions
        raise AssertionError("ran a workflow without steps")
    except PyFaaSWorkflowValidationError as e:  # noqa: F405
        print(e)


def test_a_bad_config_file_and_an_unreachable_director(tmp_path):
    try:
        pyfaas_config(file_path=str(tmp_path / 'missing.toml'))
        raise AssertionError("configured from a missing file")
    except PyFaaSConfigError as e:  # noqa: F405
        print(e)
    nobody = write_toml(str(tmp_path / 'client.toml'),
                        client_sections(reserve_port(), timeout=2))
    pyfaas_config(file_path=nobody)
    try:
        pyfaas_ping()
        raise AssertionError("pinged a Director that is not there")
    except PyFaaSPingingError as e:  # noqa: F405
        print(e)


def test_kill_worker_without_an_id_stops_the_only_worker(fresh_cluster):
    cluster = fresh_cluster(workers=1)
    (worker,) = cluster.workers.values()
    pyfaas_config(file_path=cluster.client_config())
    pyfaas_kill_worker()
    assert worker.wait(15) == 0
    wait_until(lambda: pyfaas_get_worker_ids() == [], 5,
               "the killed Worker is still listed")
