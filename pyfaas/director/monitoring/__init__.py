"""The Director's monitoring endpoint: Prometheus metrics, a JSON status
and a live dashboard over HTTP, read-only.

:mod:`.metrics` renders the Prometheus text format from the status
document (pure); :mod:`.server` serves it, ``/api/status`` and the page
``dashboard.html`` (package data) from a thread of its own, from the
latest document the Director's loop handed over. Off unless the Director
file has ``[monitoring] enabled = true``; see docs/monitoring.md.
"""
