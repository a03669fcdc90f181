"""``python -m pyfaas status``: a readable picture of a running cluster.

Owns asking one Director for its status document (a STATUS request,
:meth:`pyfaas.client.client.Client.status`: the very document its
monitoring endpoint serves as ``/api/status``, built in one place,
:mod:`pyfaas.director.monitor`) and showing it: as text tables, as JSON,
or refreshed in place in a terminal (``--watch``).
"""

import json
import sys
import time

from ..errors import (PyFaaSAuthenticationError, PyFaaSConfigError,
                      PyFaaSError)

CLEAR = "\x1b[H\x1b[2J"      # cursor home, clear the screen
RECENT_SHOWN = 5             # recent errors and evictions in the text


def collect(client):
    """Everything ``status`` shows: the Director's status document."""
    return client.status()


def _table(headers, rows):
    widths = [len(h) for h in headers]
    text_rows = [[("" if v is None else str(v)) for v in row] for row in rows]
    for row in text_rows:
        widths = [max(w, len(v)) for w, v in zip(widths, row)]

    def fmt(cells):
        return "  ".join("%-*s" % (w, v) for w, v in zip(widths, cells)).rstrip()
    out = [fmt(headers), fmt("-" * w for w in widths)]
    out += [fmt(row) for row in text_rows]
    return "\n".join(out)


def _ms(seconds):
    return None if seconds is None else "%.3f ms" % (seconds * 1000.0)


def _mib(size):
    return None if size is None else "%.1f MiB" % (size / 1048576.0)


def _pct(ratio):
    return None if ratio is None else "%.0f%%" % (100 * ratio)


def _clock(wall):
    return time.strftime("%H:%M:%S", time.localtime(wall))


def render(data):
    """The status as text tables."""
    d = data["director"]
    calls = data["calls"]
    rate = data["history"][-1] if data["history"] else None
    evicted = sum(data["evictions"].values())
    parts = ["director %s  protocol %s  up %.0f s  %d worker(s)  %d "
             "function(s)%s" % (d["director"], d["protocol"], d["uptime_s"],
                                d["workers"], d["functions"],
                                "  STOPPING" if d["draining"] else ""),
             "calls: %s/s, %s errors/s, %d in flight (%d bytes), %d routed;"
             " %d eviction(s)" % (
                 "%.1f" % rate[1] if rate else "-",
                 "%.1f" % rate[2] if rate else "-", calls["in_flight"],
                 calls["pending_bytes"], calls["routed"], evicted), ""]
    parts.append("WORKERS")
    parts.append(_table(
        ["id", "address", "state", "busy/threads", "in-flight", "stuck",
         "calls", "errors", "p50", "p95", "cache hits", "memory", "restarts",
         "last cause", "heartbeat age", "uptime"],
        [[w["worker_id"], w["addr"],
          "stuck (takes no calls)" if w["state"] == "stuck" else w["state"],
          "%s/%s" % ("-" if w["busy_threads"] is None else w["busy_threads"],
                     w["max_threads"]),
          w["inflight"], w["stuck"], w["calls"], w["errors"],
          _ms(w["p50_s"]), _ms(w["p95_s"]), _pct(w["cache_hit_ratio"]),
          _mib(w["rss_bytes"]),
          w["restarts"] if w["supervised"] else "unsupervised",
          w["last_cause"], "%.2f s" % w["last_heartbeat_age_s"],
          "%.0f s" % w["uptime_s"]]
         for w in data["workers"]]))
    parts.append("")
    parts.append("FUNCTIONS")
    parts.append(_table(
        ["name", "id", "workers", "calls", "errors", "lost", "mean", "p50",
         "p95"],
        [[f["name"] + (f["signature"] or ""), f["func_id"], f["workers"],
          f["calls"], f["errors"], f["lost"], _ms(f["mean_s"]),
          _ms(f["p50_s"]), _ms(f["p95_s"])]
         for f in data["functions"]]))
    evictions = data["recent_evictions"][-RECENT_SHOWN:]
    if evictions:
        parts += ["", "RECENT EVICTIONS"]
        parts += ["%s  %s  %s (%s), %d call(s) lost" % (
            _clock(e["time"]), e["worker_id"], e["reason"], e["detail"],
            e["calls_lost"]) for e in evictions]
    errors = data["recent_errors"][-RECENT_SHOWN:]
    if errors:
        parts += ["", "RECENT ERRORS"]
        for e in errors:
            where = " on ".join(x for x in (e["function"], e["worker_id"])
                                if x)
            first = e["message"].splitlines()[0] if e["message"] else ""
            parts.append("%s  %s  %s%s" % (_clock(e["time"]), e["code"],
                                           where + ": " if where else "",
                                           first))
    return "\n".join(parts)


def run_status(config=None, as_json=False, watch=None, out=None):
    """Print the status of the cluster; return the exit code.

    ``watch``: seconds between refreshes, redrawing in place until
    Ctrl-C (with ``as_json``, one document per line); None: once.
    """
    out = out or sys.stdout
    if watch is None:
        with _client(config) as client:
            data = collect(client)
        print(json.dumps(data, indent=2, sort_keys=True) if as_json
              else render(data), file=out)
        return 0
    try:
        _watch(config, as_json, max(0.2, watch), out)
    except KeyboardInterrupt:
        pass
    return 0


def _watch(config, as_json, interval, out):
    """Redraw every ``interval`` seconds; a Director that goes away is
    asked again at the next turn."""
    client = None
    next_at = time.monotonic()
    try:
        while True:
            try:
                if client is None:
                    client = _client(config)
                data = collect(client)
            except (PyFaaSConfigError, PyFaaSAuthenticationError):
                raise   # waiting cannot mend these
            except PyFaaSError as exc:
                if client is not None:
                    client.close()
                    client = None
                problem = "pyfaas: %s; trying again every %.1f s" % (
                    exc, interval)
                if as_json:
                    print(problem, file=sys.stderr, flush=True)
                else:
                    print(CLEAR + problem, file=out, flush=True)
            else:
                if as_json:
                    print(json.dumps(data, sort_keys=True), file=out,
                          flush=True)
                else:
                    print("%s%s\n\nevery %.1f s (Ctrl-C to stop)" % (
                        CLEAR, render(data), interval), file=out, flush=True)
            # (after a slow round, the next one waits a whole interval
            # instead of catching up in a burst)
            next_at = max(next_at + interval, time.monotonic())
            time.sleep(max(0.0, next_at - time.monotonic()))
    finally:
        if client is not None:
            client.close()


def _client(config):
    from ..client.client import Client, default_client
    return Client.from_config(config) if config else default_client()
