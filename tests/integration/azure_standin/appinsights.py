"""A loopback stand-in of Application Insights' ingestion service, with local auth disabled.

The Azure Monitor exporter posts telemetry to ``{IngestionEndpoint}/v2.1/track`` (a JSON array
or newline-delimited JSON, often gzip-compressed) and answers ``itemsReceived`` /
``itemsAccepted``; live metrics talk to ``{LiveEndpoint}/QuickPulseService.svc/...``, which
answers whether anyone is watching (``x-ms-qps-subscribed``). With local authentication
disabled (the Bicep's component), every request must carry an Entra ID token for
``https://monitor.azure.com``; one without is refused with 401, as the service does.

``rows()`` gives the received telemetry as the tables the workbook queries see it:
``customMetrics`` (name, value, customDimensions) and ``customEvents`` (name,
customDimensions).
"""

from __future__ import annotations

import gzip
import json
import uuid
from typing import Any

from tests.integration.azure_standin.credentials import verify_jwt
from tests.integration.azure_standin.http import App, Request, Response

AUDIENCE = "https://monitor.azure.com"


class IngestionStandIn(App):
    """``url`` is set by whoever serves it (HTTPS: the exporter sends a bearer token)."""

    def __init__(self) -> None:
        super().__init__()
        self.url = ""
        self.instrumentation_key = str(uuid.uuid4())
        self.envelopes: list[dict[str, Any]] = []
        self.auth_failures: list[str] = []
        self.route("POST", "/v2.1/track", "telemetry.track", self._track)
        self.route("POST", "/v2/track", "telemetry.track", self._track)
        self.route("POST", "/QuickPulseService.svc/(?P<op>[A-Za-z]+)", "livemetrics", self._live)

    @property
    def connection_string(self) -> str:
        """What the component's ``properties.ConnectionString`` would be."""
        return (
            f"InstrumentationKey={self.instrumentation_key};IngestionEndpoint={self.url}/;"
            f"LiveEndpoint={self.url}/;ApplicationId={uuid.uuid5(uuid.NAMESPACE_URL, self.url)}"
        )

    def dispatch(self, request: Request) -> Response:
        header = request.header("Authorization")
        claims = (
            verify_jwt(header.removeprefix("Bearer ")) if header.startswith("Bearer ") else None
        )
        if claims is None or str(claims.get("aud", "")).rstrip("/") != AUDIENCE:
            self.auth_failures.append(f"{request.method} {request.path}: {claims}")
            return Response(
                401, {"itemsReceived": 0, "itemsAccepted": 0, "errors": [{"statusCode": 401}]}
            )
        return super().dispatch(request)

    def _track(self, request: Request) -> Response:
        body = request.body
        if request.header("Content-Encoding").lower() == "gzip" or body[:2] == b"\x1f\x8b":
            body = gzip.decompress(body)
        text = body.decode("utf-8").strip()
        items = (
            json.loads(text)
            if text.startswith("[")
            else [json.loads(line) for line in text.splitlines() if line.strip()]
        )
        with self.lock:
            self.envelopes.extend(items)
        return Response(
            200, {"itemsReceived": len(items), "itemsAccepted": len(items), "errors": []}
        )

    def _live(self, request: Request) -> Response:
        return Response(200, None, {"x-ms-qps-subscribed": "false"})

    def rows(self) -> dict[str, list[dict[str, Any]]]:
        """Received telemetry as ``customMetrics`` and ``customEvents`` rows."""
        metrics: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        with self.lock:
            envelopes = list(self.envelopes)
        for envelope in envelopes:
            data = (envelope.get("data") or {}).get("baseData") or {}
            kind = (envelope.get("data") or {}).get("baseType")
            dimensions = dict(data.get("properties") or {})
            if kind == "MetricData":
                for metric in data.get("metrics") or []:
                    metrics.append(
                        {"name": metric.get("name"), "value": metric.get("value"),
                         "customDimensions": dimensions}
                    )  # fmt: skip
            elif kind == "EventData":
                events.append({"name": data.get("name"), "customDimensions": dimensions})
        return {"customMetrics": metrics, "customEvents": events}
