"""The exceptions under the original py-faas's module name.

Code written for the original imports its exceptions from here
(``from pyfaas.exceptions import *``, or by name); this module only
re-exports :mod:`pyfaas.errors`, which owns the classes, their place in the
hierarchy and the error codes. Every class is also importable from
``pyfaas`` itself.
"""

from .errors import *  # noqa: F401,F403 - the re-export is the module
from .errors import __all__  # noqa: F401
