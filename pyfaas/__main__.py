"""``python -m pyfaas``: see :mod:`pyfaas.cli`."""

import sys

from .cli import main

sys.exit(main())
