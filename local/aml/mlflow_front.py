"""The workspace's MLflow endpoint on loopback: what the ``azureml-mlflow`` plugin talks to.

In Azure ML a job's MLflow calls go, through the plugin, to three services of the workspace:
the MLflow REST API (``/mlflow/v2.0/<workspace scope>/api/2.0/mlflow/...``), the run-history
artifact API (``/history/v1.0/<workspace scope>/experiments/E/runs/R/artifacts/...``) that
hands out SAS URIs, and Blob Storage (``https://<account>.blob.core.windows.net/...``) where
the bytes go. ``WorkspaceEndpoint`` serves all three over the local MLflow store:

- **MLflow REST** is MLflow's own server application, in process, over the same sqlite store
  the executor uses. Artifact locations are stored as ``file://`` URIs (so everything on this
  machine reads them) and shown to jobs as the ``azureml://…/experiments/E/runs/R/artifacts``
  URIs Azure ML reports; requests are translated back.
- **Run artifacts**: batch create (``…/artifacts/batch/metadata``), content information,
  listing; content URIs are ``https://localaml.blob.core.windows.net/azureml/ExperimentRun/
  dcid.<run>/<path>?<sas>``, the shape the plugin requires before it downloads anything.
- **Blob**: steps reach that host through an HTTPS proxy (``HTTPS_PROXY``) which accepts
  CONNECT only for ``*.blob.core.windows.net`` and answers the blob operations the Azure
  Storage SDK uses for uploads and downloads (Put Blob, Put Block, Put Block List, Get Blob
  with ranges, Get Blob Properties) from the run's artifact folder. Any other host is refused
  (403): a step has no network here, and now it says so.

Every call needs the job's run token (``local.aml.workspace.RunTokens``) or, for blobs, a SAS
signature this endpoint issued. It runs in threads of the process running the job, for as
long as the job runs.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import http.server
import io
import json
import logging
import re
import shutil
import socket
import socketserver
import ssl
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlparse

from local.aml.workspace import (
    RunTokens,
    TlsMaterial,
    TokenError,
    WorkspaceIdentity,
    tls_material,
    workspace_secret,
)

log = logging.getLogger(__name__)

BLOB_ACCOUNT = "localaml"
BLOB_HOST = f"{BLOB_ACCOUNT}.blob.core.windows.net"
BLOB_CONTAINER = "azureml"
SAS_LIFETIME_SECONDS = 24 * 3600
MAX_JSON_BODY = 64 * 1024 * 1024
MAX_BLOB_BYTES = 4 * 1024 * 1024 * 1024
_API = re.compile(
    r"^/mlflow/v[12]\.0(?P<scope>/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.MachineLearningServices/workspaces/[^/]+)(?P<rest>/.*)$"
)
_HISTORY = re.compile(
    r"^/history/v1\.0(?P<scope>/subscriptions/[^/]+/resourceGroups/[^/]+/providers/"
    r"Microsoft\.MachineLearningServices/workspaces/[^/]+)/(?:experiments|experimentids)/"
    r"(?P<experiment>[^/]+)/runs/(?P<run>[^/]+)/artifacts(?P<rest>/.*)?$"
)
_BLOB_NAME = re.compile(r"^ExperimentRun/dcid\.(?P<run>[^/]+)/(?P<path>.+)$")
_RUN_ID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
# MLflow's server handlers read their stores from module globals; endpoints of different
# stores in one process take turns (sqlite serialises writes anyway).
_MLFLOW_TURN = threading.Lock()


@dataclass(frozen=True)
class Stores:
    """One endpoint's MLflow stores, handed to MLflow's handlers for each request."""

    tracking: Any
    registry: Any

    @classmethod
    def open(cls, tracking_uri: str, artifact_root: str | None) -> Stores:
        from mlflow.server import handlers

        registries: Any = handlers
        tracking = registries._tracking_store_registry.get_store(tracking_uri, artifact_root)
        registry = registries._model_registry_store_registry.get_store(tracking_uri)
        return cls(tracking, registry)

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        from mlflow.server import handlers

        with _MLFLOW_TURN:
            handlers._tracking_store = self.tracking
            handlers._model_registry_store = self.registry
            yield


def _json_response(
    start: StartResponse, status: int, body: Any, headers: Iterable[tuple[str, str]] = ()
) -> list[bytes]:
    data = json.dumps(body).encode("utf-8")
    reason = http.HTTPStatus(status).phrase
    start(
        f"{status} {reason}",
        [("Content-Type", "application/json"), ("Content-Length", str(len(data))), *headers],
    )
    return [data]


def _error(start: StartResponse, status: int, code: str, message: str) -> list[bytes]:
    body = {"error": {"code": code, "message": message}, "error_code": code, "message": message}
    return _json_response(start, status, body)


class ArtifactLocations:
    """Where a run's artifacts live, and the two names a location has (``file://`` on this
    machine, ``azureml://`` as jobs see it)."""

    def __init__(self, stores: Stores, identity: WorkspaceIdentity) -> None:
        self.stores = stores
        self.identity = identity
        self.netloc = ""
        self._runs: dict[str, tuple[str, Path]] = {}
        self._lock = threading.Lock()

    def run_folder(self, run_id: str) -> tuple[str, Path]:
        """(experiment id, local artifact folder) of ``run_id``; KeyError if unknown."""
        if not _RUN_ID.match(run_id):
            raise KeyError(run_id)
        with self._lock:
            if run_id in self._runs:
                return self._runs[run_id]
        from mlflow.exceptions import MlflowException

        try:
            info = self.stores.tracking.get_run(run_id).info
        except MlflowException as exc:
            raise KeyError(run_id) from exc
        uri = urlparse(info.artifact_uri)
        if uri.scheme != "file":
            raise KeyError(run_id)
        found = (str(info.experiment_id), Path(unquote(uri.path)))
        with self._lock:
            self._runs[run_id] = found
        return found

    # A file:// artifact location of a run: <experiment's location>/<run id>/artifacts[/path]
    _FILE = re.compile(r"^file://(?P<path>/.*?)/(?P<run>[0-9a-f]{32})/artifacts(?P<rest>/.*)?$")
    _AZUREML = re.compile(
        r"^azureml://[^/]+/mlflow/v[12]\.0/subscriptions/[^/]+/resourceGroups/[^/]+/providers/"
        r"Microsoft\.MachineLearningServices/workspaces/[^/]+/experiments/(?P<exp>[^/]+)/runs/"
        r"(?P<run>[^/]+)/artifacts(?P<rest>/.*)?$"
    )

    def to_azureml(self, value: str) -> str:
        match = self._FILE.match(value)
        if not match:
            return value
        try:
            experiment, folder = self.run_folder(match.group("run"))
        except KeyError:
            return value
        if unquote(f"{match.group('path')}/{match.group('run')}/artifacts") != str(folder):
            return value
        rest = (match.group("rest") or "").strip("/")
        return self.identity.artifact_uri(self.netloc, experiment, match.group("run"), rest)

    def to_file(self, value: str) -> str:
        match = self._AZUREML.match(value)
        if not match:
            return value
        try:
            _, folder = self.run_folder(match.group("run"))
        except KeyError:
            return value
        rest = (match.group("rest") or "").rstrip("/")
        return folder.as_uri() + rest


def _rewrite(value: Any, convert: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return convert(value) if "://" in value else value
    if isinstance(value, list):
        return [_rewrite(v, convert) for v in value]
    if isinstance(value, dict):
        return {k: _rewrite(v, convert) for k, v in value.items()}
    return value


class Sas:
    """Shared-access signatures for the blob side (HMAC over blob name, permissions, expiry)."""

    def __init__(self, secret: bytes) -> None:
        self._secret = hashlib.sha256(b"blob:" + secret).digest()

    def sign(self, blob: str, permissions: str, expiry: int) -> str:
        text = f"{blob}\n{permissions}\n{expiry}".encode()
        signature = base64.b64encode(hmac.new(self._secret, text, hashlib.sha256).digest())
        return f"sv=2021-08-06&sr=b&sp={permissions}&se={expiry}&sig={quote(signature, safe='')}"

    def check(self, blob: str, query: dict[str, list[str]], needed: str) -> bool:
        try:
            permissions, expiry = query["sp"][0], int(query["se"][0])
            given = base64.b64decode(query["sig"][0])
        except (KeyError, IndexError, ValueError):
            return False
        text = f"{blob}\n{permissions}\n{expiry}".encode()
        expected = hmac.new(self._secret, text, hashlib.sha256).digest()
        return (
            hmac.compare_digest(given, expected)
            and expiry >= time.time()
            and all(p in permissions for p in needed)
        )


class FrontApp:
    """The WSGI application behind the HTTPS port (MLflow REST and run artifacts)."""

    def __init__(
        self,
        locations: ArtifactLocations,
        tokens: RunTokens,
        sas: Sas,
        mlflow_app: Callable[[Environ, StartResponse], Iterable[bytes]],
    ) -> None:
        self.locations = locations
        self.tokens = tokens
        self.sas = sas
        self.mlflow_app = mlflow_app
        self.calls: list[tuple[str, str]] = []

    def __call__(self, environ: Environ, start: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        auth = environ.get("HTTP_AUTHORIZATION", "")
        if not auth.startswith("Bearer "):
            return _error(start, 401, "Unauthorized", "a run token is required (Bearer)")
        try:
            self.tokens.check(auth.removeprefix("Bearer ").strip())
        except TokenError as exc:
            return _error(start, 401, "Unauthorized", f"run token refused: {exc}")
        api = _API.match(path)
        if api and api.group("scope") == self.locations.identity.scope:
            self.calls.append((method, api.group("rest")))
            return self._mlflow(environ, start, api.group("rest"))
        history = _HISTORY.match(path)
        if history and history.group("scope") == self.locations.identity.scope:
            self.calls.append((method, "history" + (history.group("rest") or "")))
            return self._artifacts(environ, start, history)
        return _error(start, 404, "NotFound", f"no such workspace API: {method} {path}")

    # -- MLflow REST --------------------------------------------------------------------------

    def _mlflow(self, environ: Environ, start: StartResponse, rest: str) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if length > MAX_JSON_BODY:
            return _error(start, 413, "RequestTooLarge", "request body too large")
        body = environ["wsgi.input"].read(length) if length else b""
        if body and "json" in environ.get("CONTENT_TYPE", "json"):
            with contextlib.suppress(ValueError):
                body = json.dumps(_rewrite(json.loads(body), self.locations.to_file)).encode()
        inner = dict(environ)
        inner["PATH_INFO"] = rest
        inner["SCRIPT_NAME"] = ""
        inner["wsgi.input"] = io.BytesIO(body)
        inner["CONTENT_LENGTH"] = str(len(body))
        inner["QUERY_STRING"] = _rewrite_query(environ.get("QUERY_STRING", ""), self.locations)
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured["status"], captured["headers"] = status, headers
            return lambda _data: None

        with self.locations.stores.installed():
            chunks = self.mlflow_app(inner, capture)
            try:
                data = b"".join(chunks)
            finally:
                close = getattr(chunks, "close", None)
                if callable(close):
                    close()
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        if any(k.lower() == "content-type" and "json" in v for k, v in headers):
            with contextlib.suppress(ValueError):
                data = json.dumps(_rewrite(json.loads(data), self.locations.to_azureml)).encode()
        start(captured["status"], [*headers, ("Content-Length", str(len(data)))])
        return [data]

    # -- run artifacts ------------------------------------------------------------------------

    def _artifacts(
        self, environ: Environ, start: StartResponse, match: re.Match[str]
    ) -> Iterable[bytes]:
        run_id, rest = match.group("run"), match.group("rest") or ""
        method = environ.get("REQUEST_METHOD", "GET")
        query = parse_qs(environ.get("QUERY_STRING", ""))
        try:
            experiment, folder = self.locations.run_folder(run_id)
        except KeyError:
            return _error(start, 404, "RunNotFound", f"run {run_id!r} does not exist")
        if method == "POST" and rest == "/batch/metadata":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            if length > MAX_JSON_BODY:
                return _error(start, 413, "RequestTooLarge", "request body too large")
            try:
                paths = [
                    str(p["path"]) for p in json.loads(environ["wsgi.input"].read(length))["paths"]
                ]
            except (ValueError, KeyError, TypeError):
                return _error(start, 400, "BadRequest", "expected {'paths': [{'path': ...}]}")
            return _json_response(start, 200, self._batch(run_id, folder, paths))
        if method == "GET" and rest in ("/contentinfo", "/metadata"):
            path = _clean(query.get("path", [""])[0])
            if path is None or not (folder / path).is_file():
                return _error(
                    start, 404, "ArtifactNotFound", f"no artifact {path!r} in run {run_id}"
                )
            info = (
                self._content(run_id, path)
                if rest == "/contentinfo"
                else self._artifact(run_id, path)
            )
            return _json_response(start, 200, info)
        if method == "GET" and rest in ("", "/path", "/prefix/contentinfo"):
            prefix = _clean(query.get("path", [""])[0]) if rest != "" else ""
            if prefix is None:
                return _error(start, 400, "BadRequest", "bad path")
            files = _files_under(folder, prefix)
            make = self._content if rest == "/prefix/contentinfo" else self._artifact
            return _json_response(
                start, 200, {"value": [make(run_id, p) for p in files], "nextLink": None}
            )
        del experiment
        return _error(start, 404, "NotFound", f"no artifact API {method} {rest or '/'}")

    def _batch(self, run_id: str, folder: Path, paths: list[str]) -> dict[str, Any]:
        artifacts: dict[str, Any] = {}
        content: dict[str, Any] = {}
        errors: dict[str, Any] = {}
        for path in paths:
            clean = _clean(path)
            if not clean:
                errors[path] = {
                    "error": {"code": "BadArtifactPath", "message": f"bad path {path!r}"}
                }
                continue
            artifacts[path] = self._artifact(run_id, clean)
            content[path] = self._content(run_id, clean, permissions="rcw")
        folder.mkdir(parents=True, exist_ok=True)
        return {"artifacts": artifacts, "artifactContentInformation": content, "errors": errors}

    def _artifact(self, run_id: str, path: str) -> dict[str, Any]:
        return {
            "artifactId": f"ExperimentRun/dcid.{run_id}/{path}",
            "origin": "ExperimentRun",
            "container": f"dcid.{run_id}",
            "path": path,
        }

    def _content(self, run_id: str, path: str, permissions: str = "r") -> dict[str, Any]:
        blob = f"ExperimentRun/dcid.{run_id}/{path}"
        expiry = int(time.time()) + SAS_LIFETIME_SECONDS
        sas = self.sas.sign(blob, permissions, expiry)
        url = f"https://{BLOB_HOST}/{BLOB_CONTAINER}/{quote(blob)}?{sas}"
        return {**self._artifact(run_id, path), "contentUri": url}


def _rewrite_query(query: str, locations: ArtifactLocations) -> str:
    if "azureml%3A" not in query and "azureml:" not in query:
        return query
    parts = []
    for item in query.split("&"):
        key, sep, value = item.partition("=")
        parts.append(key + sep + quote(locations.to_file(unquote(value)), safe=""))
    return "&".join(parts)


def _clean(path: str) -> str | None:
    """A relative artifact path with no way out of the run's folder, or None."""
    parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts) or any("\x00" in p for p in parts):
        return None
    return "/".join(parts)


def _files_under(folder: Path, prefix: str) -> list[str]:
    base = folder / prefix if prefix else folder
    if base.is_file():
        return [prefix]
    if not base.is_dir():
        return []
    return sorted(p.relative_to(folder).as_posix() for p in base.rglob("*") if p.is_file())


# -- Blob Storage, behind an HTTPS proxy ----------------------------------------------------------


class _BlobHandler(http.server.BaseHTTPRequestHandler):
    """Blob operations on one TLS connection tunnelled through the proxy."""

    protocol_version = "HTTP/1.1"
    server_version = "Windows-Azure-Blob/1.0"
    front: WorkspaceEndpoint

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("blob: " + format, *args)

    def _target(self, needed: str) -> tuple[Path, dict[str, list[str]]] | None:
        parsed = urlparse(self.path)
        query = parse_qs(parsed.query)
        container, _, blob = unquote(parsed.path).lstrip("/").partition("/")
        if container != BLOB_CONTAINER or not self.front.sas.check(blob, query, needed):
            self._reply(403, b"", {"x-ms-error-code": "AuthenticationFailed"})
            return None
        match = _BLOB_NAME.match(blob)
        path = _clean(match.group("path")) if match else None
        if match is None or not path:
            self._reply(404, b"", {"x-ms-error-code": "BlobNotFound"})
            return None
        locations = self.front.locations
        assert locations is not None
        try:
            _, folder = locations.run_folder(match.group("run"))
        except KeyError:
            self._reply(404, b"", {"x-ms-error-code": "ContainerNotFound"})
            return None
        return folder / path, query

    def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        extra = {
            "x-ms-request-id": str(uuid.uuid4()),
            "x-ms-version": "2021-08-06",
            "Date": formatdate(usegmt=True),
            **(headers or {}),
        }
        for key, value in extra.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _body(self) -> bytes | None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BLOB_BYTES:
            self._reply(413, b"", {"x-ms-error-code": "RequestBodyTooLarge"})
            return None
        return self.rfile.read(length) if length else b""

    def do_PUT(self) -> None:
        target = self._target("w")
        if target is None:
            return
        path, query = target
        body = self._body()
        if body is None:
            return
        comp = query.get("comp", [""])[0]
        staging = path.parent / f".{path.name}.blocks"
        if comp == "block":
            block = query.get("blockid", [""])[0]
            staging.mkdir(parents=True, exist_ok=True)
            (staging / hashlib.sha256(block.encode()).hexdigest()).write_bytes(body)
            self._reply(201, b"", {"Content-MD5": _md5(body)})
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        if comp == "blocklist":
            try:
                ids = [el.text or "" for el in ET.fromstring(body)]  # noqa: S314
                with tmp.open("wb") as out:
                    for block in ids:
                        with (staging / hashlib.sha256(block.encode()).hexdigest()).open(
                            "rb"
                        ) as part:
                            shutil.copyfileobj(part, out)
            except (ET.ParseError, OSError):
                tmp.unlink(missing_ok=True)
                self._reply(400, b"", {"x-ms-error-code": "InvalidBlockList"})
                return
            shutil.rmtree(staging, ignore_errors=True)
        elif comp:
            self._reply(400, b"", {"x-ms-error-code": "UnsupportedQueryParameter"})
            return
        else:
            tmp.write_bytes(body)
        tmp.replace(path)
        self._reply(201, b"", {**self._properties(path), "x-ms-request-server-encrypted": "true"})

    def do_HEAD(self) -> None:
        self._read(head=True)

    def do_GET(self) -> None:
        self._read(head=False)

    def _read(self, *, head: bool) -> None:
        target = self._target("r")
        if target is None:
            return
        path, _ = target
        if not path.is_file():
            self._reply(404, b"", {"x-ms-error-code": "BlobNotFound"})
            return
        size = path.stat().st_size
        headers = {**self._properties(path), "x-ms-blob-type": "BlockBlob"}
        headers["Content-Type"] = "application/octet-stream"
        ranged = self.headers.get("x-ms-range") or self.headers.get("Range")
        if head or not ranged:
            data = b"" if head else path.read_bytes()
            if head:
                headers["Content-Length"] = str(size)
                self.send_response(200)
                for key, value in {**headers, "Date": formatdate(usegmt=True)}.items():
                    self.send_header(key, value)
                self.end_headers()
                return
            self._reply(200, data, headers)
            return
        match = re.match(r"bytes=(\d+)-(\d*)", ranged)
        start = int(match.group(1)) if match else 0
        if size == 0 or start >= size:
            self._reply(
                416, b"", {"x-ms-error-code": "InvalidRange", "Content-Range": f"bytes */{size}"}
            )
            return
        end = min(int(match.group(2)) if match and match.group(2) else size - 1, size - 1)
        with path.open("rb") as handle:
            handle.seek(start)
            data = handle.read(end - start + 1)
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        self._reply(206, data, headers)

    @staticmethod
    def _properties(path: Path) -> dict[str, str]:
        stat = path.stat()
        return {
            "ETag": f'"0x{stat.st_mtime_ns:X}"',
            "Last-Modified": formatdate(stat.st_mtime, usegmt=True),
            "x-ms-creation-time": formatdate(stat.st_ctime, usegmt=True),
        }


def _md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()  # noqa: S324 - Content-MD5


class _ProxyHandler(socketserver.BaseRequestHandler):
    """CONNECT tunnels to the blob host only; the tunnel's TLS ends here."""

    front: WorkspaceEndpoint

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(60)
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 8192:
            chunk = sock.recv(1024)
            if not chunk:
                return
            head += chunk
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        method, _, rest = request_line.partition(" ")
        target = rest.split(" ")[0]
        host, _, port = target.rpartition(":")
        if method != "CONNECT" or not host.endswith(".blob.core.windows.net") or port != "443":
            sock.sendall(
                b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            log.info("refused a step's connection to %s (no network beyond this machine)", target)
            return
        sock.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        try:
            tls = self.front.blob_tls.wrap_socket(sock, server_side=True)
        except (ssl.SSLError, OSError):
            return
        handler = type("_Bound", (_BlobHandler,), {"front": self.front})
        with contextlib.suppress(OSError, ssl.SSLError):
            handler(tls, self.client_address, self.server)


class _ThreadingTCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@dataclass
class _Listening:
    server: Any
    thread: threading.Thread


class WorkspaceEndpoint:
    """The local workspace's MLflow, artifact and blob endpoints, served from threads.

    ``start()`` binds 127.0.0.1 on free ports; ``step_environment(run_id, experiment_id,
    experiment_name)`` gives the variables a job process needs (``MLFLOW_*``, ``AZUREML_*``,
    the proxy and the CA bundle); ``stop()`` closes both listeners. ``state`` is the folder
    holding the token secret and TLS material (shared by every job of one executor root).
    """

    def __init__(
        self,
        tracking_uri: str,
        state: str | Path,
        identity: WorkspaceIdentity | None = None,
    ) -> None:
        self.state = Path(state)
        self.identity = identity or WorkspaceIdentity()
        self.tracking_uri = tracking_uri
        secret = workspace_secret(self.state)
        self.tokens = RunTokens(secret)
        self.sas = Sas(secret)
        self.tls: TlsMaterial = tls_material(self.state)
        self.locations: ArtifactLocations | None = None
        self.blob_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.blob_tls.load_cert_chain(str(self.tls.cert), str(self.tls.key))
        self.app: FrontApp | None = None
        self._api: _Listening | None = None
        self._proxy: _Listening | None = None

    @property
    def netloc(self) -> str:
        assert self.locations is not None, "start() first"
        return self.locations.netloc

    @property
    def calls(self) -> list[tuple[str, str]]:
        """(method, route) of every workspace API call served, in order."""
        return list(self.app.calls) if self.app is not None else []

    def start(self) -> WorkspaceEndpoint:
        from werkzeug.serving import make_server

        from local.aml.tracking import artifact_root_for, quiet_mlflow

        quiet_mlflow()
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        from mlflow.server import app as mlflow_app

        stores = Stores.open(self.tracking_uri, artifact_root_for(self.tracking_uri))
        self.locations = ArtifactLocations(stores, self.identity)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(self.tls.cert), str(self.tls.key))
        self.app = FrontApp(self.locations, self.tokens, self.sas, mlflow_app.wsgi_app)
        api = make_server("127.0.0.1", 0, self.app, threaded=True, ssl_context=context)
        self.locations.netloc = f"127.0.0.1:{api.server_port}"
        self._api = _Listening(api, threading.Thread(target=api.serve_forever, daemon=True))
        handler = type("_BoundProxy", (_ProxyHandler,), {"front": self})
        proxy = _ThreadingTCPServer(("127.0.0.1", 0), handler)
        self._proxy = _Listening(proxy, threading.Thread(target=proxy.serve_forever, daemon=True))
        self._api.thread.start()
        self._proxy.thread.start()
        return self

    def stop(self) -> None:
        for listening in (self._api, self._proxy):
            if listening is not None:
                listening.server.shutdown()
                listening.server.server_close()
                listening.thread.join(timeout=5)
        self._api = self._proxy = None

    def __enter__(self) -> WorkspaceEndpoint:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def proxy_url(self) -> str:
        assert self._proxy is not None, "start() first"
        return f"http://127.0.0.1:{self._proxy.server.server_address[1]}"

    def step_environment(
        self, run_id: str, experiment_id: str, experiment_name: str
    ) -> dict[str, str]:
        """What Azure ML puts in a job's environment, pointed at this endpoint."""
        assert self._api is not None, "start() first"
        token = self.tokens.mint(run_id, experiment_name)
        expiry = str(int(time.time()) + 7 * 24 * 3600)
        ident = self.identity
        return {
            "MLFLOW_TRACKING_URI": ident.tracking_uri(self.netloc),
            "MLFLOW_TRACKING_TOKEN": token,
            "MLFLOW_RUN_ID": run_id,
            "MLFLOW_EXPERIMENT_ID": experiment_id,
            "MLFLOW_EXPERIMENT_NAME": experiment_name,
            "AZUREML_RUN_ID": run_id,
            "AZUREML_RUN_TOKEN": token,
            "AZUREML_RUN_TOKEN_EXPIRY": expiry,
            "AZUREML_ARM_SUBSCRIPTION": ident.subscription_id,
            "AZUREML_ARM_RESOURCEGROUP": ident.resource_group,
            "AZUREML_ARM_WORKSPACE_NAME": ident.workspace_name,
            "AZUREML_ARM_PROJECT_NAME": experiment_name,
            "AZUREML_EXPERIMENT_ID": experiment_id,
            "AZUREML_WORKSPACE_ID": ident.workspace_id,
            "AZUREML_SERVICE_ENDPOINT": f"https://{self.netloc}",
            "AZUREML_DISCOVERY_SERVICE_ENDPOINT": f"https://{self.netloc}/discovery",
            # The plugin would otherwise look the cloud up on the internet at import.
            "AZUREML_CURRENT_CLOUD": "AzureCloud",
            "AZUREML_CLOUD_ENV_NAME": "AzureCloud",
            # Local only: trust this endpoint's certificate, and reach "Blob Storage" through it.
            "REQUESTS_CA_BUNDLE": str(self.tls.ca_bundle),
            "SSL_CERT_FILE": str(self.tls.ca_bundle),
            "HTTPS_PROXY": self.proxy_url,
            "https_proxy": self.proxy_url,
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }


__all__ = ["BLOB_HOST", "WorkspaceEndpoint"]
