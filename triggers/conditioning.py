"""Blob trigger: a raw drop lands in ``raw/{source}/{batch}/{file}`` and gets conditioned.

Thin binding: the blob becomes a ``BlobDrop``, collaborators come from the composition root,
``conditioning.service.condition_blob`` does the work, one structured line is logged. Bad input
is an outcome (quarantined), not an exception; storage errors propagate so the host retries.
"""

from __future__ import annotations

import json
import logging

import azure.functions as func

from adapters.services import get_services

bp = func.Blueprint()
log = logging.getLogger("mlops.conditioning")


@bp.blob_trigger(
    arg_name="blob",
    path="%MLOPS_RAW_CONTAINER%/{source}/{name}",
    connection="MLOPS_DATALAKE",
    source=func.BlobSource.EVENT_GRID,
)
def on_raw_blob_created(blob: func.InputStream) -> None:
    # Conditioning pulls in pyarrow; import it here so loading the function app stays cheap.
    from adapters.datasets import blob_dataset_ports
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
    outcome = condition_blob(
        services.data_lake,
        drop,
        conditioned_container=settings.conditioned_container,
        quarantine_container=settings.quarantine_container,
        registry=registry,
        signals=signals,
    )
    log.info("conditioning %s", json.dumps(outcome.log_fields(), sort_keys=True))


def _name_in_container(name: str, container: str) -> str:
    """Bindings report ``container/path``; the service wants the path inside the container."""
    prefix = f"{container}/"
    return name[len(prefix) :] if name.startswith(prefix) else name
