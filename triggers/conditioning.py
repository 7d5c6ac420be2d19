"""Blob trigger: a raw drop lands in ``raw/{source}/{batch}/{file}`` and gets conditioned.

Thin binding: the blob becomes a ``BlobDrop``, collaborators come from the composition root,
``conditioning.service.condition_blob`` does the work, one structured line is logged. Bad input
is an outcome (quarantined), not an exception; storage errors propagate so the host retries.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging

import azure.durable_functions as df
import azure.functions as func

from composition import get_services

bp = df.Blueprint()
log = logging.getLogger("mlops.conditioning")
automation_log = logging.getLogger("mlops.automation")


@bp.blob_trigger(
    arg_name="blob",
    path="%MLOPS_RAW_CONTAINER%/{source}/{name}",
    connection="MLOPS_DATALAKE",
    source=func.BlobSource.EVENT_GRID,
)
@bp.durable_client_input(client_name="client")
async def on_raw_blob_created(
    blob: func.InputStream, client: df.DurableOrchestrationClient
) -> None:
    # Conditioning pulls in pyarrow; import it here so loading the function app stays cheap.
    from adapters.datasets import blob_dataset_ports
    from adapters.telemetry import Correlation, record_conditioning, span
    from conditioning.service import BlobDrop, condition_blob

    services = get_services()
    settings = services.settings
    # The public type is abstract; the worker passes azure.functions.blob.InputStream, which
    # carries blob_properties (ETag among them).
    properties = getattr(blob, "blob_properties", None) or {}
    etag = properties.get("ETag") or properties.get("Etag") or properties.get("etag")
    drop = BlobDrop(
        container=settings.raw_container,
        name=_name_in_container(blob.name or "", settings.raw_container),
        etag=str(etag) if etag else None,
    )
    registry, signals = blob_dataset_ports(services.data_lake, settings.conditioned_container)
    correlation = Correlation(blob_name=f"{drop.container}/{drop.name}")
    with span("on_raw_blob_created", kind="consumer", correlation=correlation):
        # Conditioning is CPU-bound: keep it off the worker's event loop.
        outcome = await asyncio.to_thread(
            functools.partial(
                condition_blob,
                services.data_lake,
                drop,
                conditioned_container=settings.conditioned_container,
                quarantine_container=settings.quarantine_container,
                registry=registry,
                signals=signals,
                assets=services.data_assets,
            )
        )
    record_conditioning(
        outcome.source,
        status=outcome.status,
        rows_out=outcome.rows_out,
        rows_rejected=outcome.rows_rejected,
        reject_counts=outcome.reject_counts,
    )
    log.info("conditioning %s", json.dumps(outcome.log_fields(), sort_keys=True))
    if outcome.status == "conditioned":
        await _maybe_start_training(client)


async def _maybe_start_training(client: df.DurableOrchestrationClient) -> None:
    from orchestrators.data_arrival import training_request
    from triggers.starts import start_once

    request = training_request(get_services())
    if isinstance(request, str):
        automation_log.info("training not started: %s", request)
        return
    instance_id, payload = request
    started = await start_once(client, "run_train", instance_id, payload)
    automation_log.info("training %s %s", instance_id, "started" if started else "already exists")


def _name_in_container(name: str, container: str) -> str:
    """Bindings report ``container/path``; the service wants the path inside the container."""
    prefix = f"{container}/"
    return name[len(prefix) :] if name.startswith(prefix) else name
