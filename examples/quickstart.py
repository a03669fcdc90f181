"""Register a function on a running cluster and call it.

    python -m pyfaas director configs/director.toml &
    python -m pyfaas worker configs/worker.toml &
    python examples/quickstart.py configs/client.toml
"""

import sys

from pyfaas import (PyFaaSFunctionExecutionError, pyfaas_close, pyfaas_config,
                    pyfaas_exec, pyfaas_get_worker_ids, pyfaas_list,
                    pyfaas_register)


def add(a, b, c=12):
    return a + b + c


def fragile(x):
    return 10 / x


def main(config=None):
    pyfaas_config(config)
    print("workers:", pyfaas_get_worker_ids())
    print("add id:", pyfaas_register(add))
    pyfaas_register(fragile)
    print("add(5, 6, c=56) =", pyfaas_exec("add", [5, 6], {"c": 56}))
    print("cached:", pyfaas_exec("add", [1, 2], save_in_cache=True))
    for fid, info in pyfaas_list().items():
        print("  %s %s%s" % (fid, info["name"], info["signature"]))
    try:
        pyfaas_exec("fragile", [0])
    except PyFaaSFunctionExecutionError as exc:
        print("remote error:", exc.remote_type, exc.remote_message)
    pyfaas_close()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
