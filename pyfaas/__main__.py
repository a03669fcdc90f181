"""``python -m pyfaas``: see :mod:`pyfaas.tools.cli`."""

import sys

from .tools.cli import main

# Guarded: child processes started with the "spawn" method (process
# isolation) import this module again and must not run the CLI.
if __name__ == "__main__":
    sys.exit(main())
