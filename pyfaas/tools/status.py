"""``python -m pyfaas status``: a readable picture of a running cluster.

Owns gathering what the status shows (workers, functions, statistics) from
one Director through a :class:`pyfaas.client.client.Client`, and rendering it as
plain-text tables or JSON.
"""

import json
import time

from ..errors import PyFaaSStatisticsRetrievalError


def collect(client):
    """Everything ``status`` shows, as a JSON-ready dict."""
    ping = client.ping()
    workers = client.workers()
    functions = client.list()
    try:
        stats = client.get_stats()
        stats_error = None
    except PyFaaSStatisticsRetrievalError as exc:
        stats, stats_error = None, str(exc)
    now = time.time()
    for w in workers:
        started = w.get("started_at") or w.get("joined_at")
        w["uptime_s"] = round(now - started, 1) if started else None
    rows = []
    for fid, info in functions.items():
        fig = (stats or {}).get("functions", {}).get(fid, {})
        rows.append({"name": info["name"], "func_id": fid,
                     "signature": info.get("signature"),
                     "workers": len(info.get("workers", [])),
                     "calls": fig.get("calls", 0),
                     "errors": fig.get("errors", 0),
                     "mean_s": fig.get("mean_s"), "p95_s": fig.get("p95_s"),
                     "cache_hit_rate": fig.get("cache_hit_rate")})
    return {"director": ping, "workers": workers, "functions": rows,
            "statistics": None if stats is None else stats.get("director"),
            "statistics_error": stats_error}


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


def _state(worker):
    if worker.get("draining"):
        return "draining"
    if worker.get("wedged"):
        return "stuck (takes no calls)"
    return "serving"


def _ms(seconds):
    return None if seconds is None else "%.3f ms" % (seconds * 1000.0)


def render(data):
    """The status as text tables."""
    d = data["director"]
    parts = ["director %s  protocol %s  up %.0f s  %d worker(s)  %d "
             "function(s)" % (d["director"], d["protocol"], d["uptime_s"],
                              d["workers"], d["functions"]), ""]
    parts.append("WORKERS")
    parts.append(_table(
        ["id", "address", "pid", "uptime", "functions", "in-flight",
         "stuck", "heartbeat age", "state", "restarts", "last cause"],
        [[w["worker_id"], w["addr"], w["pid"],
          None if w["uptime_s"] is None else "%.0f s" % w["uptime_s"],
          len(w["functions"]), w["inflight"], w.get("stuck", 0),
          "%.2f s" % w["last_heartbeat_age_s"], _state(w),
          w.get("restarts", 0) if w.get("supervised") else "unsupervised",
          w.get("last_cause")]
         for w in data["workers"]]))
    parts.append("")
    parts.append("FUNCTIONS")
    parts.append(_table(
        ["name", "id", "calls", "errors", "mean", "p95", "cache hit rate"],
        [[f["name"] + (f["signature"] or ""), f["func_id"], f["calls"],
          f["errors"], _ms(f["mean_s"]), _ms(f["p95_s"]),
          None if f["cache_hit_rate"] is None
          else "%.0f%%" % (100 * f["cache_hit_rate"])]
         for f in data["functions"]]))
    if data["statistics_error"]:
        parts += ["", "statistics: " + data["statistics_error"]]
    elif data["statistics"]:
        s = data["statistics"]
        parts += ["", "director: %d call(s) routed, %d error(s), %d in "
                      "flight" % (s["requests_routed"], s["errors"],
                                  s["queue_depth"])]
    return "\n".join(parts)


def run_status(config=None, as_json=False):
    """Print the status of the cluster; return the exit code."""
    from ..client.client import Client, default_client
    client = Client.from_config(config) if config else default_client()
    with client:
        data = collect(client)
    if as_json:
        print(json.dumps(data, indent=2, sort_keys=True))
    else:
        print(render(data))
    return 0
