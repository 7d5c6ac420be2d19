"""Blob trigger: a raw drop lands in ``raw/{source}/{batch}/{file}`` and gets conditioned.

Thin binding: the blob arrives as an SDK-type binding, a ``BlobClient`` the Functions blob
extension builds from the ``MLOPS_DATALAKE`` connection (azurefunctions-extensions-bindings-blob),
not as ``func.InputStream``, which would hold the whole blob in the worker's memory. The service
streams the blob through that client (the one way it is read), collaborators come from the
composition root, one structured line is logged. Bad input is an outcome (quarantined), not an
exception; storage errors propagate so the host retries.

The parameter's type must be importable at module level: the Python worker resolves the
annotation (``typing.get_type_hints``) when it loads the function to decide that the binding is
an SDK type, and the import registers the extension's converter.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING

import azure.durable_functions as df
import azure.functions as func
import azurefunctions.extensions.bindings.blob as blob_sdk

from composition import get_services

if TYPE_CHECKING:
    from adapters.datalake import RawBlob
    from conditioning.service import ConditioningOutcome

bp = df.Blueprint()
log = logging.getLogger("mlops.conditioning")
automation_log = logging.getLogger("mlops.automation")


@bp.blob_trigger(
    arg_name="blob",
    path="%MLOPS_RAW_CONTAINER%/{source}/{name}",
    connection="MLOPS_DATALAKE",
    # Event Grid based: the kind Flex Consumption supports, and without the polling lag.
    source=func.BlobSource.EVENT_GRID,
)
@bp.durable_client_input(client_name="client")
async def on_raw_blob_created(
    blob: blob_sdk.BlobClient, client: df.DurableOrchestrationClient
) -> None:
    from adapters.datalake import BoundBlob
    from adapters.telemetry import Correlation, record_conditioning, span

    raw = BoundBlob(blob)
    correlation = Correlation(blob_name=f"{raw.container}/{raw.name}")
    with span("on_raw_blob_created", kind="consumer", correlation=correlation):
        # Reading the blob and conditioning it block (and the first call imports pandas and
        # pyarrow): keep all of it off the worker's event loop.
        outcome = await asyncio.to_thread(_condition, raw)
    record_conditioning(
        outcome.source,
        status=outcome.status,
        rows_out=outcome.rows_out,
        rows_rejected=outcome.rows_rejected,
        reject_counts=outcome.reject_counts,
    )
    log.info("conditioning %s", json.dumps(outcome.log_fields(), sort_keys=True))
    if outcome.status in ("conditioned", "quarantined") and outcome.dataset_version:
        await asyncio.to_thread(_summarise, outcome)
    if outcome.status == "conditioned":
        await _maybe_start_training(client)


def _condition(raw: RawBlob) -> ConditioningOutcome:
    # Conditioning pulls in pyarrow; import it here so loading the function app stays cheap.
    from adapters.datasets import blob_dataset_ports
    from conditioning.service import condition_blob

    services = get_services()
    settings = services.settings
    registry, signals = blob_dataset_ports(services.data_lake, settings.conditioned_container)
    return condition_blob(
        raw,
        services.data_lake,
        conditioned_container=settings.conditioned_container,
        quarantine_container=settings.quarantine_container,
        registry=registry,
        signals=signals,
        assets=services.data_assets,
    )


async def _maybe_start_training(client: df.DurableOrchestrationClient) -> None:
    from orchestrators.data_arrival import training_request
    from triggers.starts import start_once

    # The check reads the dataset registry (blob storage): not on the event loop.
    request = await asyncio.to_thread(training_request, get_services())
    if isinstance(request, str):
        automation_log.info("training not started: %s", request)
        return
    instance_id, payload = request
    started = await start_once(client, "run_train", instance_id, payload)
    automation_log.info("training %s %s", instance_id, "started" if started else "already exists")


def _summarise(outcome: ConditioningOutcome) -> None:
    """Fold the new dataset version into the dashboard's summary; a failure only logs (the
    data is conditioned and registered whatever happens to this view of it)."""
    from dashboard.record import record_conditioned

    assert outcome.dataset_version is not None
    try:
        record_conditioned(
            get_services(), outcome.source, outcome.dataset_version, outcome.reject_counts
        )
    # Storage and SDK errors of every kind end here on purpose (see above).
    except Exception as exc:  # noqa: BLE001
        log.warning("dashboard summary not updated for %s: %s", outcome.dataset_version, exc)
