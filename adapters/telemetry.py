"""Telemetry: OpenTelemetry traces, metrics and logs exported to Application Insights.

``configure_telemetry(settings)`` turns exporting on when
``APPLICATIONINSIGHTS_CONNECTION_STRING`` is set (``settings.app_insights_connection_string``)
and leaves everything off otherwise. The helpers below are always safe to call: while telemetry
is off they return at once, import nothing and record nothing, so callers never branch on it.

What is recorded and how it is named (Application Insights shows metric names as given):

====================================  ==========  ======================================
metric                                kind        dimensions
====================================  ==========  ======================================
``mlops.conditioning.rows_conditioned``  counter   source
``mlops.conditioning.rows_rejected``  counter     source, reason
``mlops.conditioning.files``          counter     source, status
``mlops.job.duration``                histogram   pipeline, status, segment (seconds)
``mlops.job.outcomes``                counter     pipeline, status, segment
``mlops.model.mape`` / ``.rmse_zero`` / ``.rmse_all``  gauge  model_name, model_version,
                                                  segment, component (ensemble, baseline,
                                                  champion), role
``mlops.model.age_days``              gauge       model_name, model_version, segment, stale
``mlops.alerts.sent``                 counter     kind, delivery (single or digest)
``mlops.alerts.pending``              gauge       (none): alerts waiting in the outbox
``mlops.alerts.oldest_pending_minutes``  gauge    (none): age of the oldest waiting alert
``mlops.conditioning.hours_since_last``  gauge    (none): hours since data was last conditioned
====================================  ==========  ======================================

Custom events (Application Insights ``customEvents``; properties as custom dimensions):

==========================  ==============================================================
event                       properties
==========================  ==============================================================
``mlops.job.finished``      pipeline, segment, status, job_name, failed_step, error,
                            duration_seconds
==========================  ==============================================================

Spans carry correlation ids as attributes ``mlops.blob_name``, ``mlops.event_id``,
``mlops.instance_id``, ``mlops.job_name`` (and ``mlops.segment``); ``log_fields`` gives the
same ids for a structured log line. A trace crosses process and replay boundaries as a W3C
``traceparent`` carrier: ``trace_carrier()`` inside a span returns it, and ``span(...,
parent=carrier)`` continues the trace elsewhere (an activity, an Azure ML job's tags).

The exporter and the OpenTelemetry SDK are imported inside ``configure_telemetry`` only, so
importing this module costs nothing at function-app load.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from adapters.settings import Settings

log = logging.getLogger(__name__)

INSTRUMENTATION_NAME = "mlops.automation"
EVENTS_LOGGER = "mlops.events"
# The Azure Monitor exporter turns a log record carrying this attribute into a custom event.
CUSTOM_EVENT_ATTRIBUTE = "microsoft.custom_event.name"
SERVICE_NAME = "mlops-automation"
ATTRIBUTE_PREFIX = "mlops."

SpanKindName = Literal["internal", "server", "client", "consumer", "producer"]
AttributeValue = str | bool | int | float


@dataclass(frozen=True)
class Correlation:
    """The ids that tie one piece of work to its trigger; empty ones are left out."""

    blob_name: str = ""
    event_id: str = ""
    instance_id: str = ""
    job_name: str = ""
    segment: str = ""

    def fields(self) -> dict[str, str]:
        """Non-empty ids by their plain names (``blob_name`` …)."""
        return {k: v for k, v in vars(self).items() if v}

    def attributes(self) -> dict[str, str]:
        """Non-empty ids as span attributes (``mlops.blob_name`` …)."""
        return {f"{ATTRIBUTE_PREFIX}{k}": v for k, v in self.fields().items()}


def log_fields(correlation: Correlation) -> dict[str, str]:
    """``extra=`` for a structured log line carrying the correlation ids.

    With telemetry on, the log handler exports these as custom dimensions of the trace
    message (and the message itself carries the active span's operation id).
    """
    return correlation.attributes()


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.enabled = False
        self.instruments: dict[str, Any] = {}


_state = _State()


def telemetry_enabled() -> bool:
    """Whether ``configure_telemetry`` turned exporting on in this process."""
    return _state.enabled


def configure_telemetry(
    settings: Settings,
    *,
    credential: TokenCredential | None = None,
    live_metrics: bool | None = None,
    offline_storage: bool = True,
) -> bool:
    """Turn on exporting to Application Insights when a connection string is set.

    Idempotent: once telemetry is on, later calls return ``True`` and change nothing (the
    OpenTelemetry providers are process-wide and can be set once). Without a connection
    string nothing is configured and ``False`` is returned; a later call with one still works.

    ``credential`` authenticates the exporter (Application Insights with local auth disabled
    needs Entra ID). When absent and ``settings.environment == "azure"``, a
    ``ManagedIdentityCredential`` for the app's user-assigned identity is used. Live metrics
    and performance counters default to on in Azure only. ``offline_storage=False`` drops
    telemetry that cannot be sent instead of retrying it from disk later.
    """
    connection_string = settings.app_insights_connection_string
    if not connection_string:
        return False
    with _state.lock:
        if _state.enabled:
            return True
        in_azure = settings.environment == "azure"
        if credential is None and in_azure:
            from azure.identity import ManagedIdentityCredential

            client_id = settings.storage.client_id or settings.datalake.client_id
            credential = ManagedIdentityCredential(client_id=client_id)
        live = in_azure if live_metrics is None else live_metrics

        from azure.monitor.opentelemetry import configure_azure_monitor
        from opentelemetry.sdk.resources import Resource

        # An explicit resource keeps the distro's resource detectors from probing the VM
        # metadata endpoint, which costs a network timeout outside Azure VMs.
        resource = Resource.create(
            {
                "service.name": SERVICE_NAME,
                "service.namespace": "mlops",
                "deployment.environment": settings.environment,
            }
        )
        options: dict[str, Any] = {
            "connection_string": connection_string,
            "resource": resource,
            # Traffic is low (drops, orchestrations, jobs): keep every trace whole.
            "sampling_ratio": 1.0,
            "enable_live_metrics": live,
            "enable_performance_counters": live,
            "disable_offline_storage": not offline_storage,
        }
        if credential is not None:
            options["credential"] = credential
        configure_azure_monitor(**options)
        _state.enabled = True
        _state.instruments.clear()
    log.info("telemetry: exporting to Application Insights")
    return True


def flush_telemetry(timeout_seconds: float = 10.0) -> bool:
    """Export everything recorded so far (spans, metrics, logs); ``True`` when all flushed.

    Call it before a short-lived process exits; the Functions host keeps running, so triggers
    need not.
    """
    if not _state.enabled:
        return True
    from opentelemetry import metrics, trace
    from opentelemetry._logs import get_logger_provider

    millis = int(timeout_seconds * 1000)
    done = True
    for provider in (trace.get_tracer_provider(), metrics.get_meter_provider()):
        flush = getattr(provider, "force_flush", None)
        if flush is not None:
            done = bool(flush(millis)) and done
    logs_flush = getattr(get_logger_provider(), "force_flush", None)
    if logs_flush is not None:
        done = bool(logs_flush(millis)) and done
    return done


class ActiveSpan:
    """What ``span`` yields: set attributes on the span (no-op while telemetry is off)."""

    def __init__(self, span: Any = None) -> None:
        self._span = span

    @property
    def recording(self) -> bool:
        return self._span is not None and bool(self._span.is_recording())

    def set(self, key: str, value: AttributeValue) -> None:
        if self._span is not None:
            self._span.set_attribute(key, value)

    def set_correlation(self, correlation: Correlation) -> None:
        for key, value in correlation.attributes().items():
            self.set(key, value)


@contextmanager
def span(
    name: str,
    *,
    kind: SpanKindName = "internal",
    correlation: Correlation | None = None,
    parent: Mapping[str, str] | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> Iterator[ActiveSpan]:
    """Run the block inside a span named ``name``.

    ``parent`` is a W3C carrier (``{"traceparent": ...}``) from ``trace_carrier()`` or from
    the Functions invocation context; without one the span joins the current trace (or starts
    a new one). Exceptions are recorded on the span and re-raised. Trigger spans should use
    ``kind="consumer"`` (blob, Event Grid, timer) or ``"server"`` (HTTP) so Application
    Insights lists them as requests; work inside them stays ``"internal"``; calls out to
    Azure ML use ``"client"``.
    """
    if not _state.enabled:
        yield ActiveSpan()
        return
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    context = TraceContextTextMapPropagator().extract(dict(parent)) if parent else None
    attrs: dict[str, AttributeValue] = dict(attributes or {})
    if correlation is not None:
        attrs.update(correlation.attributes())
    tracer = trace.get_tracer(INSTRUMENTATION_NAME)
    with tracer.start_as_current_span(
        name, context=context, kind=trace.SpanKind[kind.upper()], attributes=attrs
    ) as current:
        yield ActiveSpan(current)


def trace_carrier() -> dict[str, str]:
    """The current span as a W3C carrier (``traceparent``/``tracestate``); ``{}`` when off.

    Put it in an orchestration's input, pass it on to activities, and set it as a tag of an
    Azure ML job, so every part of one run lands in one end-to-end transaction.
    """
    if not _state.enabled:
        return {}
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier


def _instrument(kind: str, name: str, unit: str, description: str) -> Any:
    """The process-wide instrument ``name`` (created once per configuration)."""
    with _state.lock:
        found = _state.instruments.get(name)
        if found is not None:
            return found
        from opentelemetry import metrics

        meter = metrics.get_meter(INSTRUMENTATION_NAME)
        created: Any
        if kind == "counter":
            created = meter.create_counter(name, unit=unit, description=description)
        elif kind == "histogram":
            created = meter.create_histogram(name, unit=unit, description=description)
        else:
            created = meter.create_gauge(name, unit=unit, description=description)
        _state.instruments[name] = created
        return created


def record_conditioning(
    source: str,
    *,
    status: str,
    rows_out: int,
    rows_rejected: int,
    reject_counts: Mapping[str, int] | None = None,
) -> None:
    """One conditioned (or quarantined) file of ``source``: rows kept and rows rejected.

    ``reject_counts`` splits the rejected rows by reason code (the manifest's
    ``reject_counts``); rows it does not account for are counted under reason ``unspecified``.
    """
    if not _state.enabled:
        return
    _instrument("counter", "mlops.conditioning.files", "{file}", "raw files conditioned").add(
        1, {"source": source, "status": status}
    )
    if rows_out:
        _instrument("counter", "mlops.conditioning.rows_conditioned", "{row}", "rows written").add(
            rows_out, {"source": source}
        )
    rejected = _instrument(
        "counter", "mlops.conditioning.rows_rejected", "{row}", "rows quarantined"
    )
    counts = {k: v for k, v in (reject_counts or {}).items() if v > 0}
    unaccounted = rows_rejected - sum(counts.values())
    if unaccounted > 0:
        counts["unspecified"] = counts.get("unspecified", 0) + unaccounted
    for reason, count in sorted(counts.items()):
        rejected.add(count, {"source": source, "reason": reason})


def _event(name: str, properties: Mapping[str, AttributeValue]) -> None:
    """One custom event (``customEvents``) with ``properties`` as its custom dimensions."""
    logger = logging.getLogger(EVENTS_LOGGER)
    # The exporter's handler sits on the root logger; this logger must let INFO through
    # whatever level the host gives the root.
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)
    logger.info(name, extra={CUSTOM_EVENT_ATTRIBUTE: name, **properties})


def record_job(
    pipeline: str,
    *,
    status: str,
    duration_seconds: float | None,
    segment: str = "",
    job_name: str = "",
    failed_step: str = "",
    error: str = "",
) -> None:
    """A finished Azure ML pipeline job: its terminal status and how long it ran.

    Counted as metrics (outcomes, duration) and told as one ``mlops.job.finished`` event
    that names the job, so a failure can be looked up from the workbook.
    """
    if not _state.enabled:
        return
    attrs = {"pipeline": pipeline, "status": status, "segment": segment or "all"}
    _instrument("counter", "mlops.job.outcomes", "{job}", "finished pipeline jobs").add(1, attrs)
    if duration_seconds is not None and duration_seconds >= 0:
        _instrument("histogram", "mlops.job.duration", "s", "pipeline job run time").record(
            duration_seconds, attrs
        )
    _event(
        "mlops.job.finished",
        {
            **attrs,
            "job_name": job_name,
            "failed_step": failed_step,
            "error": error[:500],
            "duration_seconds": -1.0 if duration_seconds is None else float(duration_seconds),
        },
    )


def record_model_quality(
    model_name: str,
    version: str,
    *,
    segment: str,
    metrics: Mapping[str, float],
    role: str = "",
) -> None:
    """A model version's quality. ``metrics`` are registry tags such as ``ensemble_mape``,
    ``baseline_rmse_all``: ``{component}_{mape|rmse_zero|rmse_all}``; others are ignored."""
    if not _state.enabled:
        return
    for key, value in sorted(metrics.items()):
        for measure in ("mape", "rmse_zero", "rmse_all"):
            if key.endswith(f"_{measure}"):
                component = key.removesuffix(f"_{measure}")
                _instrument(
                    "gauge", f"mlops.model.{measure}", "1", f"model {measure} on the holdout"
                ).set(
                    float(value),
                    {
                        "model_name": model_name,
                        "model_version": str(version),
                        "segment": segment,
                        "component": component,
                        "role": role or "none",
                    },
                )
                break


def record_model_age(
    model_name: str, version: str, *, segment: str, age_days: float, stale: bool
) -> None:
    """How long ago a champion was trained, when a scoring run or the staleness check ran."""
    if not _state.enabled:
        return
    _instrument("gauge", "mlops.model.age_days", "d", "days since the model was trained").set(
        float(age_days),
        {
            "model_name": model_name,
            "model_version": str(version),
            "segment": segment,
            "stale": str(bool(stale)).lower(),
        },
    )


def record_alert_sent(kind: str, *, digest: bool = False, count: int = 1) -> None:
    """Alert emails sent (``count`` alerts; a digest folds several into one email)."""
    if not _state.enabled or count <= 0:
        return
    _instrument("counter", "mlops.alerts.sent", "{alert}", "alerts emailed to Ops").add(
        count, {"kind": kind, "delivery": "digest" if digest else "single"}
    )


def record_alert_outbox(pending: int, oldest_pending_minutes: float) -> None:
    """How many alerts wait in the outbox and for how long (each outbox flush)."""
    if not _state.enabled:
        return
    _instrument("gauge", "mlops.alerts.pending", "{alert}", "alerts waiting in the outbox").set(
        int(pending)
    )
    _instrument(
        "gauge", "mlops.alerts.oldest_pending_minutes", "min", "age of the oldest waiting alert"
    ).set(float(oldest_pending_minutes))


def record_conditioning_silence(hours: float) -> None:
    """Hours since a raw file was last conditioned into usable data (each drift check)."""
    if not _state.enabled:
        return
    _instrument(
        "gauge", "mlops.conditioning.hours_since_last", "h", "hours since data was conditioned"
    ).set(float(hours))
