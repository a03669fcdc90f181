"""The status document in the Prometheus text exposition format 0.0.4.

Owns the metric names, their help text, types and labels, and the text:
:func:`render` turns a status document (see
:meth:`pyfaas.director.monitor.Monitor.document`) into what ``/metrics``
serves. Pure: a function of the document alone. Labels are bounded: a
function's name, a Worker's id, an outcome, a reason, an error code or a
state; never anything per call. docs/monitoring.md explains each metric.
"""

import math

from ..monitor import WORKER_STATES

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OUTCOMES = ("ok", "error", "lost", "cancelled")


def _value(v):
    if v is None:
        return "NaN"
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v))


def _label(value):
    return str(value).replace("\\", "\\\\").replace("\n", "\\n") \
        .replace('"', '\\"')


class _Text:
    """The lines of an exposition, one family after another."""

    def __init__(self):
        self.lines = []

    def family(self, name, kind, help_text, samples):
        """One metric family: ``samples`` is a list of ``(labels dict,
        value)`` or ``(suffix, labels dict, value)``; a family without
        samples is left out."""
        if not samples:
            return
        self.lines.append("# HELP %s %s" % (
            name, help_text.replace("\\", "\\\\").replace("\n", "\\n")))
        self.lines.append("# TYPE %s %s" % (name, kind))
        for sample in samples:
            suffix, labels, value = sample if len(sample) == 3 \
                else ("",) + tuple(sample)
            if labels:
                text = ",".join('%s="%s"' % (k, _label(v))
                                for k, v in labels.items())
                self.lines.append("%s%s{%s} %s" % (name, suffix, text,
                                                   _value(value)))
            else:
                self.lines.append("%s%s %s" % (name, suffix, _value(value)))

    def text(self):
        return "\n".join(self.lines) + "\n"


def render(doc):
    """The Prometheus text of a status document (a str)."""
    out = _Text()
    d, proc, calls = doc["director"], doc["process"], doc["calls"]
    workers, functions = doc["workers"], doc["functions"]
    out.family("pyfaas_director_info", "gauge",
               "The Director: its address and protocol version (always 1).",
               [({"director": d["director"], "protocol": d["protocol"]},
                 1)])
    out.family("process_cpu_seconds_total", "counter",
               "CPU time of the Director process (user + system), seconds.",
               [({}, proc["cpu_seconds"])] if "cpu_seconds" in proc else [])
    out.family("process_resident_memory_bytes", "gauge",
               "Resident memory of the Director process, bytes.",
               [({}, proc["rss_bytes"])] if proc.get("rss_bytes") is not None
               else [])
    out.family("process_start_time_seconds", "gauge",
               "When the Director started, seconds since the Unix epoch.",
               [({}, proc["start_time"])])

    # Calls.
    names = {f["func_id"]: f["name"] for f in functions}
    samples = []
    for w in workers:
        for fid, c in sorted(w["by_function"].items()):
            if fid not in names:
                continue
            labels = {"function": names[fid], "worker": w["worker_id"]}
            for outcome, value in (("ok", c["calls"] - c["errors"]),
                                   ("error", c["errors"]),
                                   ("lost", c["lost"]),
                                   ("cancelled", c["cancelled"])):
                samples.append((dict(labels, outcome=outcome), value))
    out.family("pyfaas_calls_total", "counter",
               "Calls (and workflow steps) that ended, by function, Worker "
               "and outcome: ok or error (the Worker answered), lost (the "
               "Worker was lost first), cancelled (by the client, or its "
               "workflow ended). Workers that are gone are left out.",
               samples)
    samples = []
    for f in functions:
        labels = {"function": f["name"]}
        for bound, count in zip(doc["latency_buckets_s"],
                                f["latency_buckets"]):
            samples.append(("_bucket", dict(labels, le=_value(float(bound))),
                            count))
        samples.append(("_bucket", dict(labels, le="+Inf"), f["calls"]))
        samples.append(("_sum", labels, f["latency_sum_s"]))
        samples.append(("_count", labels, f["calls"]))
    out.family("pyfaas_call_duration_seconds", "histogram",
               "Seconds from the Director sending a call to a Worker to its "
               "reply, by function (every Worker, those gone too).", samples)
    out.family("pyfaas_calls_in_flight", "gauge",
               "Calls and workflow steps sent to Workers, not answered yet.",
               [({}, calls["in_flight"])])
    out.family("pyfaas_pending_bytes", "gauge",
               "Argument bytes of the calls and steps in flight.",
               [({}, calls["pending_bytes"])])
    out.family("pyfaas_client_errors_total", "counter",
               "ERROR answers the Director itself gave clients, by code "
               "(code=\"overloaded\": calls refused by max_pending_calls or "
               "the byte budgets).",
               [({"code": code}, n)
                for code, n in sorted(doc["client_errors"].items())])
    out.family("pyfaas_workflows_total", "counter",
               "Workflows that ended, by outcome.",
               [({"outcome": k}, n)
                for k, n in sorted(doc["workflows"].items())])

    # Workers.
    states = dict.fromkeys(WORKER_STATES, 0)
    for w in workers:
        states[w["state"]] += 1
    out.family("pyfaas_workers", "gauge",
               "Workers registered, by state (draining: stopping, no new "
               "calls; stuck: every thread held by a call past its time "
               "limit, no new calls).",
               [({"state": k}, n) for k, n in states.items()])
    out.family("pyfaas_worker_evictions_total", "counter",
               "Workers removed, by reason: heartbeat (silent too long), "
               "stopped (after a graceful stop), disconnected (the "
               "connection closed or failed), error (protocol or output "
               "errors).",
               [({"reason": k}, n)
                for k, n in sorted(doc["evictions"].items())])
    per_worker = (
        ("pyfaas_worker_restarts_total", "counter", "restarts",
         "Times this Worker id registered again after it was lost."),
        ("pyfaas_worker_threads", "gauge", "max_threads",
         "Threads of the Worker's pool (max_threads)."),
        ("pyfaas_worker_busy_threads", "gauge", "busy_threads",
         "Pool threads running a call, at the last heartbeat."),
        ("pyfaas_worker_requests_in_flight", "gauge", "inflight",
         "Requests the Director sent the Worker, not answered yet."),
        ("pyfaas_worker_resident_memory_bytes", "gauge", "rss_bytes",
         "Resident memory of the Worker process, at the last heartbeat."),
        ("pyfaas_worker_cpu_seconds_total", "counter", "cpu_seconds",
         "CPU time of the Worker process (user + system), seconds."),
        ("pyfaas_cache_hits_total", "counter", "cache_hits",
         "Result cache lookups that found the result, per Worker."),
        ("pyfaas_cache_misses_total", "counter", "cache_misses",
         "Result cache lookups that did not, per Worker."),
    )
    for name, kind, field, help_text in per_worker:
        out.family(name, kind, help_text,
                   [({"worker": w["worker_id"]}, w[field])
                    for w in workers if w.get(field) is not None])
    out.family("pyfaas_functions", "gauge", "Functions registered.",
               [({}, len(functions))])
    out.family("pyfaas_connections", "gauge",
               "Open connections, by state (handshake: not authenticated "
               "yet; closing: being closed).",
               [({"state": k}, n) for k, n in doc["connections"].items()])
    return out.text()
