"""The monitoring endpoint's HTTP server, on threads of its own.

Owns the ``[monitoring]`` listening socket, the thread that accepts on it
(woken through a socketpair to stop), one short-lived thread per request
(at most MAX_REQUESTS at once; more are closed at accept), the token
check, and the routes, all read-only (GET and HEAD):

- ``/metrics``: Prometheus text (:mod:`.metrics`);
- ``/api/status``: the status document as JSON;
- ``/``: the dashboard (``dashboard.html``, which polls ``/api/status``).

It never touches the Director's state. The loop hands it each new status
document with :meth:`MonitoringServer.publish`, which replaces one
reference (the document is never changed after); requests read whatever
reference is current. So the loop never waits for a request, and a request
never waits for the loop (a stalled loop shows as an old ``time``). Each
document is encoded at most once per format, by the first request for it.

On an address that is not loopback, every request must carry the cluster
token, as a bearer token (``Authorization: Bearer TOKEN``) or as the
password of HTTP basic authentication (any user name), the way browsers
ask for it. Without a token such an address is refused unless
``[security] allow_insecure`` is true.
"""

import base64
import binascii
import hashlib
import hmac
import json
import logging
import pkgutil
import re
import selectors
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from ...errors import PyFaaSConfigError
from ...security import is_loopback
from .metrics import CONTENT_TYPE as METRICS_TYPE, render

log = logging.getLogger(__name__)

MAX_REQUESTS = 16          # requests served at once; more are closed
REQUEST_TIMEOUT_S = 10.0   # a client that sends nothing for this long goes
JSON_TYPE = "application/json"
HTML_TYPE = "text/html; charset=utf-8"


class Snapshot:
    """One status document and its encodings, made on first use."""

    __slots__ = ("doc", "_json", "_metrics")

    def __init__(self, doc):
        self.doc = doc
        self._json = None
        self._metrics = None

    def json(self):
        if self._json is None:  # (two threads may both encode it: harmless)
            self._json = json.dumps(self.doc, separators=(",", ":"),
                                    allow_nan=False).encode("utf-8")
        return self._json

    def metrics(self):
        if self._metrics is None:
            self._metrics = render(self.doc).encode("utf-8")
        return self._metrics


def token_matches(header, token):
    """True if an ``Authorization`` header carries ``token`` (bytes), as a
    bearer token or as the password of basic authentication."""
    if not header:
        return False
    scheme, _, value = header.strip().partition(" ")
    scheme = scheme.lower()
    value = value.strip()
    if scheme == "bearer":
        given = value.encode("utf-8", "replace")
    elif scheme == "basic":
        try:
            given = base64.b64decode(value, validate=True).partition(b":")[2]
        except (binascii.Error, ValueError):
            return False
    else:
        return False
    return hmac.compare_digest(given, token)


def _dashboard():
    """The page, and the Content-Security-Policy that lets only its own
    inline script and style run and only this server be fetched."""
    page = pkgutil.get_data(__package__, "dashboard.html")
    hashes = []
    for tag in (b"script", b"style"):
        found = re.findall(b"<%s>(.*?)</%s>" % (tag, tag), page, re.S)
        hashes.append(" ".join(
            "'sha256-%s'" % base64.b64encode(hashlib.sha256(body).digest())
            .decode("ascii") for body in found))
    policy = ("default-src 'none'; script-src %s; style-src %s; "
              "connect-src 'self'; img-src data:; base-uri 'none'; "
              "form-action 'none'; frame-ancestors 'none'" % tuple(hashes))
    return page, policy


class MonitoringServer:
    """The HTTP endpoint of one Director, bound, ready for :meth:`start`.

    Args:
        config: the :class:`~pyfaas.config.DirectorConfig` (its
            ``monitoring_address`` and ``monitoring_port``, and
            ``allow_insecure``).
        token: the cluster token (bytes) or None.

    Raises:
        PyFaaSConfigError: a non-loopback address without a token (and
            without ``allow_insecure``), or an address that cannot be
            bound (one line, naming the file and the section).
    """

    def __init__(self, config, token=None):
        host = config.monitoring_address
        if not is_loopback(host) and token is None \
                and not config.allow_insecure:
            raise PyFaaSConfigError(
                "%s: [monitoring] address: refusing to serve monitoring on %s"
                " without a cluster token: anyone who can reach it could read"
                " the cluster's state. Set [security] token_file (or "
                "$PYFAAS_TOKEN), or [security] allow_insecure = true to "
                "accept the risk." % (config.path, host))
        # Loopback needs no token: whoever can reach it is on this machine.
        self.token = None if is_loopback(host) else token
        self.page, self.page_policy = _dashboard()
        self._snapshot = None
        try:
            self._httpd = _HTTPServer((host, config.monitoring_port), self)
        except OSError as exc:
            raise PyFaaSConfigError(
                "%s: [monitoring] address, port: cannot listen on %s:%s: %s"
                % (config.path, host, config.monitoring_port,
                   exc.strerror or exc)) from None
        self._httpd.socket.setblocking(False)
        self.address = self._httpd.server_address[:2]
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread = None
        self._closed = False

    @property
    def url(self):
        """``http://host:port/`` of the dashboard."""
        return "http://%s:%d/" % self.address

    def publish(self, doc):
        """Serve ``doc`` (a status document nobody changes any more) from
        now on. Called by the Director's loop; never blocks."""
        self._snapshot = Snapshot(doc)

    def snapshot(self):
        """The current Snapshot, or None before the first publish."""
        return self._snapshot

    def start(self):
        """Start accepting requests (on a daemon thread)."""
        self._thread = threading.Thread(target=self._serve, daemon=True,
                                        name="pyfaas-monitoring")
        self._thread.start()

    def _serve(self):
        httpd = self._httpd
        with selectors.DefaultSelector() as sel:
            sel.register(httpd.socket, selectors.EVENT_READ)
            sel.register(self._wake_r, selectors.EVENT_READ)
            while True:
                for key, _ in sel.select():
                    if key.fileobj is self._wake_r:
                        return
                    # Non-blocking listener: a connection that went away
                    # before accept is skipped, never waited for.
                    httpd.handle_request()

    def close(self):
        """Stop accepting and close the socket. Idempotent; requests being
        answered finish on their own threads."""
        if self._closed:
            return
        self._closed = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        if self._thread is not None:
            self._thread.join(5.0)
        self._httpd.server_close()
        self._wake_r.close()
        self._wake_w.close()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, monitoring):
        self.monitoring = monitoring
        self.timeout = 0.0   # handle_request: never wait (see _serve)
        self._slots = threading.BoundedSemaphore(MAX_REQUESTS)
        super().__init__(address, _Handler)

    def process_request(self, request, client_address):
        if not self._slots.acquire(blocking=False):
            log.warning("monitoring: %d requests at once; closed one from %s",
                        MAX_REQUESTS, client_address[0])
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request, client_address):
        log.warning("monitoring: request from %s failed", client_address[0],
                    exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    server_version = "PyFaaS-monitoring"
    sys_version = ""
    timeout = REQUEST_TIMEOUT_S

    def do_GET(self):
        self._answer(with_body=True)

    def do_HEAD(self):
        self._answer(with_body=False)

    def _read_only(self):
        self._send(405, b"read-only: GET and HEAD only\n",
                   "text/plain; charset=utf-8", {"Allow": "GET, HEAD"})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _read_only

    def _answer(self, with_body):
        mon = self.server.monitoring
        if mon.token is not None and not token_matches(
                self.headers.get("Authorization"), mon.token):
            self._send(401, b"the cluster token is required (bearer token, "
                            b"or the password of basic authentication)\n",
                       "text/plain; charset=utf-8",
                       {"WWW-Authenticate":
                        'Basic realm="PyFaaS director", charset="UTF-8"'},
                       with_body)
            return
        path = urlsplit(self.path).path
        if path in ("/", "/index.html"):
            self._send(200, mon.page, HTML_TYPE,
                       {"Content-Security-Policy": mon.page_policy},
                       with_body)
            return
        if path not in ("/metrics", "/api/status"):
            self._send(404, b"not found: try /, /metrics or /api/status\n",
                       "text/plain; charset=utf-8", None, with_body)
            return
        snap = mon.snapshot()
        if snap is None:
            self._send(503, b"no status yet\n", "text/plain; charset=utf-8",
                       None, with_body)
        elif path == "/metrics":
            self._send(200, snap.metrics(), METRICS_TYPE, None, with_body)
        else:
            self._send(200, snap.json(), JSON_TYPE, None, with_body)

    def _send(self, code, body, content_type, headers=None, with_body=True):
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def log_message(self, format, *args):
        log.debug("monitoring: %s %s", self.address_string(), format % args)
