"""The package's version: ``pyfaas.__version__``, ``python -m pyfaas
--version`` and the packaging metadata (setup.cfg reads it from here)."""

__version__ = "0.1.0"
