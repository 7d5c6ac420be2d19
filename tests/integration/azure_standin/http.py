"""The HTTP machinery the stand-ins share: a threaded HTTPS server, routing by method and path
pattern, a log of every request served, injected faults, and an HTTP CONNECT proxy.

A stand-in is an ``App``: a list of ``Route``s, each naming the REST operation it answers.
``App.fail(operation, status, times=n)`` makes the next ``n`` calls of that operation answer
``status`` instead (with the service's error body and optional headers such as Retry-After).
"""

from __future__ import annotations

import http.client
import io
import json
import re
import ssl
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    host: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    params: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def header(self, name: str) -> str:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return ""


@dataclass
class Response:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None

    def payload(self) -> bytes:
        if self.raw is not None:
            return self.raw
        if self.body is None:
            return b""
        return json.dumps(self.body).encode()


Handler = Callable[[Request], Response]


def caller_of(request: Request) -> str:
    """The object id (``oid``) of the identity whose stand-in token the request carries."""
    from tests.integration.azure_standin.credentials import verify_jwt

    header = request.header("Authorization")
    claims = verify_jwt(header.removeprefix("Bearer ")) if header.startswith("Bearer ") else None
    return str((claims or {}).get("oid", ""))


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    operation: str
    handler: Handler

    @property
    def template(self) -> str:
        """The route as a readable path template (named groups as ``{name}``)."""
        text = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", self.pattern.pattern.removesuffix("$"))
        text = re.sub(r"\(\?i:([^)]*)\)", r"\1", text)
        text = re.sub(r"\[(\w)(\w)\]", lambda m: m.group(1).lower(), text)
        return text.replace("\\", "")


@dataclass(frozen=True)
class Served:
    """One request the stand-in answered: the operation, its api-version and the status, the
    route's template and who called (the ``oid`` of the bearer token; "" without one)."""

    operation: str
    method: str
    path: str
    api_version: str
    status: int
    template: str = ""
    caller: str = ""


@dataclass
class Fault:
    status: int
    headers: dict[str, str]
    body: Any
    when: Callable[[Request], bool] | None = None


class App:
    """Routes requests to handlers; subclasses add routes in ``__init__``."""

    def __init__(self) -> None:
        self.routes: list[Route] = []
        self.served: list[Served] = []
        self.unrouted: list[str] = []
        self._faults: dict[str, deque[Fault]] = {}
        self.lock = threading.RLock()

    def route(self, method: str, pattern: str, operation: str, handler: Handler) -> None:
        self.routes.append(Route(method, re.compile(pattern + r"$"), operation, handler))

    def fail(
        self,
        operation: str,
        status: int,
        *,
        times: int = 1,
        headers: dict[str, str] | None = None,
        body: Any = None,
        when: Callable[[Request], bool] | None = None,
    ) -> None:
        """The next ``times`` calls of ``operation`` (those ``when`` accepts) answer ``status``
        instead of being served."""
        if not any(r.operation == operation for r in self.routes):
            raise KeyError(f"no route serves {operation!r}")
        with self.lock:
            queue = self._faults.setdefault(operation, deque())
            for _ in range(times):
                queue.append(Fault(status, dict(headers or {}), body, when))

    def error_body(self, status: int, request: Request) -> Any:
        """The service's error body for an injected fault (subclasses shape it)."""
        return {"error": {"code": str(status), "message": f"injected {status}"}}

    def operations(self) -> list[str]:
        with self.lock:
            return [s.operation for s in self.served]

    def count(self, operation: str) -> int:
        return self.operations().count(operation)

    def dispatch(self, request: Request) -> Response:
        for route in self.routes:
            if route.method != request.method:
                continue
            match = route.pattern.match(request.path)
            if match is None:
                continue
            request.params = {k: v for k, v in match.groupdict().items() if v is not None}
            with self.lock:
                queue = self._faults.get(route.operation)
                fault = None
                if queue and (queue[0].when is None or queue[0].when(request)):
                    fault = queue.popleft()
            if fault is not None:
                body = (
                    fault.body if fault.body is not None else self.error_body(fault.status, request)
                )
                response = Response(fault.status, body, dict(fault.headers))
            else:
                response = route.handler(request)
            with self.lock:
                self.served.append(
                    Served(
                        route.operation,
                        request.method,
                        request.path,
                        request.query.get("api-version", ""),
                        response.status,
                        route.template,
                        caller_of(request),
                    )
                )
            return response
        with self.lock:
            self.unrouted.append(f"{request.method} {request.host}{request.path}")
        return Response(404, {"error": {"code": "NoRoute", "message": request.path}})

    def tunnel(self, host: str, request: Request) -> Response:
        """A request that came through the CONNECT proxy for ``host`` (default: refuse)."""
        with self.lock:
            self.unrouted.append(f"{request.method} {host}{request.path}")
        return Response(502, raw=b"")


def forward(
    request: Request, port: int, path: str, context: ssl.SSLContext | None = None
) -> Response:
    """``request`` sent on to the server at 127.0.0.1:``port`` (HTTPS with ``context``) as
    ``path`` (with its query), and that server's answer, headers and all."""
    connection: http.client.HTTPConnection
    if context is not None:
        connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=60, context=context)
    else:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        headers["Host"] = f"127.0.0.1:{port}"
        connection.request(request.method, path, body=request.body or None, headers=headers)
        answer = connection.getresponse()
        data = answer.read()
        skip = {"transfer-encoding", "connection"}
        if request.method != "HEAD":  # a HEAD answer's length is the body a GET would have
            skip.add("content-length")
        out = {k: v for k, v in answer.getheaders() if k.lower() not in skip}
        return Response(answer.status, raw=data, headers=out)
    finally:
        connection.close()


class _TunnelWriter(io.BufferedIOBase):
    """Writes everything handed to it to the tunnel's TLS socket."""

    def __init__(self, sock: ssl.SSLSocket) -> None:
        self._sock = sock

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._sock.sendall(data)
        return len(data)


class _Handler(BaseHTTPRequestHandler):
    server: StandInServer
    protocol_version = "HTTP/1.1"
    tunnel_host = ""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _read_request(self) -> Request:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        return Request(
            method=self.command,
            host=self.headers.get("Host", ""),
            path=parts.path,
            query=query,
            headers=dict(self.headers.items()),
            body=body,
        )

    def _answer(self) -> None:
        request = self._read_request()
        if self.tunnel_host:
            response = self.server.app.tunnel(self.tunnel_host, request)
        else:
            response = self.server.app.dispatch(request)
        payload = response.payload()
        self.send_response(response.status)
        headers = {k.lower(): (k, v) for k, v in response.headers.items()}
        if response.raw is None and payload and "content-type" not in headers:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        for key, value in headers.values():
            if key.lower() != "content-length":
                self.send_header(key, value)
        if self.command == "HEAD" and "content-length" in headers:
            # A HEAD answer describes the body a GET would return (a blob's size).
            self.send_header("Content-Length", headers["content-length"][1])
        else:
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = _answer

    def do_CONNECT(self) -> None:
        """Open a TLS tunnel for an allowed host; its requests go to ``App.tunnel``."""
        host = self.path.rsplit(":", 1)[0]
        if self.tunnel_host or not self.server.allows_tunnel(host):
            with self.server.app.lock:
                self.server.refused_tunnels.append(host)
            self.send_response(403)
            self.send_header("Content-Length", "0")
            self.end_headers()
            self.close_connection = True
            return
        self.send_response(200, "Connection Established")
        self.end_headers()
        assert self.server.tunnel_context is not None
        self.connection = self.server.tunnel_context.wrap_socket(self.connection, server_side=True)
        self.rfile = self.connection.makefile("rb", self.rbufsize)
        self.wfile = _TunnelWriter(self.connection)
        self.tunnel_host = host
        # Clients send CONNECT as HTTP/1.0, which would end the connection after this reply.
        self.close_connection = False


class StandInServer(ThreadingHTTPServer):
    """Serves ``app`` on 127.0.0.1 (a free port); TLS when ``context`` is given.

    With ``tunnel_context`` and ``tunnel_hosts`` the server also acts as an HTTP proxy that
    accepts CONNECT for host names matching one of the patterns and terminates TLS itself.
    """

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        app: App,
        *,
        context: ssl.SSLContext | None = None,
        tunnel_context: ssl.SSLContext | None = None,
        tunnel_hosts: tuple[str, ...] = (),
    ) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.app = app
        self.context = context
        self.tunnel_context = tunnel_context
        self._tunnel_hosts = [re.compile(p) for p in tunnel_hosts]
        self.refused_tunnels: list[str] = []  # hosts a client asked to reach and was refused
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        scheme = "https" if self.context else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def allows_tunnel(self, host: str) -> bool:
        return self.tunnel_context is not None and any(
            p.fullmatch(host) for p in self._tunnel_hosts
        )

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake happens here, in the request's own thread, not in the accept loop.
        if self.context is not None:
            try:
                request = self.context.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return
        super().finish_request(request, client_address)

    def start(self) -> StandInServer:
        self._thread = threading.Thread(target=self.serve_forever, name="standin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)


@contextmanager
def serving(server: StandInServer) -> Iterator[StandInServer]:
    server.start()
    try:
        yield server
    finally:
        server.stop()
