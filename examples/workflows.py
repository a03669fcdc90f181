"""Run the two example workflows against a running cluster.

Start a Director and a Worker first (from the repository root):

    python -m pyfaas director configs/director.toml &
    python -m pyfaas worker configs/worker.toml &
    python examples/workflows.py configs/client.toml

It registers the functions the workflows name, then runs
examples/chain.json (returns 106.6) and examples/fanout.json, whose two
branches run at the same time.
"""

import os
import sys
import time

from pyfaas import (pyfaas_chain_exec, pyfaas_config, pyfaas_load_workflow,
                    pyfaas_register)

HERE = os.path.dirname(os.path.abspath(__file__))


def add(a: int, b: int, c: int = 12) -> int:
    return a + b + c


def multiply(a, b, c=45):
    return a * b * c


def divide(a, b):
    return a / b


def load(n):
    return list(range(n))


def square(values, power):
    time.sleep(0.5)  # pretend to work: the two branches overlap
    return sum(v ** power for v in values)


def cube(values, power):
    time.sleep(0.5)
    return sum(v ** power for v in values)


def summarize(totals):
    return {"total": sum(totals), "parts": totals}


def main(config=None):
    pyfaas_config(config)
    for fn in (add, multiply, divide, load, square, cube, summarize):
        pyfaas_register(fn)
    chain = pyfaas_load_workflow(os.path.join(HERE, "chain.json"))
    print("chain ->", pyfaas_chain_exec(chain))
    fanout = pyfaas_load_workflow(os.path.join(HERE, "fanout.json"))
    start = time.monotonic()
    print("fan-out/fan-in ->", pyfaas_chain_exec(fanout),
          "in %.2f s" % (time.monotonic() - start))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
