"""The conditioning service behind the blob trigger: one raw blob in, published outputs out.

``condition_blob`` takes a raw blob named ``{source}/{batch}/{file}`` inside the raw container
(a ``RawBlob``: in the function app, the ``BlobClient`` the trigger's binding built, which is
the one way the blob is read), streams it to a local staging file, conditions it with the
source's mappings, and publishes to the data lake:

* ``conditioned/{source}/{version}/part-*.csv`` and ``manifest.json`` (written last),
* ``quarantine/{source}/{version}/rejects.csv`` (or the whole file and a manifest when unusable),
* for conditioned data, a data asset ``<source>:<version>`` (when given ``assets``),
* a ``DatasetVersion`` in the registry and, for usable data, a ``DataConditioned`` signal.

Idempotent: a redelivered blob (same name + etag) is recognised from the registry without being
read; the same content under another name or etag yields the same content-derived version and
is not published again. Outcomes for bad input are results, never exceptions; storage failures
propagate (``TransientError``) so the platform retries.

The source comes from the blob *name*, not from the trigger's template binding (the host's
``{source}`` placeholder is greedy and would include the batch folder).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from adapters.datalake import DataLake, RawBlob
from adapters.datasets import ConditionedSignals, DataConditioned, DatasetRegistry, DatasetVersion
from adapters.errors import AccessDeniedError, ConflictError, NotFoundError, SettingsError
from conditioning.contracts import CONTRACTS
from conditioning.engine import (
    ENGINE_VERSION,
    ConditionResult,
    EngineOptions,
    StagedFile,
    condition_file,
    safe_file_name,
)
from conditioning.mapping import SourceMapping, builtin_mappings
from conditioning.publish import CONDITIONED, placements

if TYPE_CHECKING:
    from adapters.data_assets import DataAssets

UNKNOWN_SOURCE = "unknown"
_MAX_NAME = 1024


@dataclass(frozen=True)
class BlobDrop:
    """A raw blob: its container, its name inside the container, and its etag."""

    container: str
    name: str
    etag: str | None = None


@dataclass(frozen=True)
class ConditioningOutcome:
    """What the service did; ``status`` is conditioned, quarantined, unchanged or ignored."""

    status: str
    source: str
    blob: str
    dataset_version: str | None = None
    rows_in: int = 0
    rows_out: int = 0
    rows_rejected: int = 0
    reason_code: str | None = None
    reason: str | None = None
    written: tuple[str, ...] = field(default=())
    reject_counts: dict[str, int] = field(default_factory=dict)

    def log_fields(self) -> dict[str, object]:
        """Flat fields for one structured log line."""
        return {
            "status": self.status,
            "source": self.source,
            "blob": self.blob,
            "dataset_version": self.dataset_version,
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "rows_rejected": self.rows_rejected,
            "reason_code": self.reason_code,
        }


def parse_blob_name(name: str, container: str) -> tuple[str, str | None]:
    """(source, problem) for a raw blob name; ``problem`` is a reason code or None.

    Accepts ``{source}/{anything}/{file}`` (the container prefix, as bindings report it, is
    removed). Names with empty, ``.`` or ``..`` segments, backslashes or control characters are
    ``unsafe_name``; a first segment that is no known source is ``unknown_source``.
    """
    if name.startswith(f"{container}/"):
        name = name[len(container) + 1 :]
    segments = name.split("/")
    unsafe = (
        not name
        or len(name) > _MAX_NAME
        or "\\" in name
        or any(ord(ch) < 32 or ord(ch) == 127 for ch in name)
        or any(seg in ("", ".", "..") for seg in segments)
        or len(segments) < 2
    )
    source = segments[0] if segments and segments[0] in CONTRACTS else UNKNOWN_SOURCE
    if unsafe:
        return source, "unsafe_name"
    if source == UNKNOWN_SOURCE:
        return source, "unknown_source"
    return source, None


def _safe_suffix(name: str) -> str:
    """The last one or two extensions of ``name`` (``.csv.gz``), if they are plain words."""
    suffixes = PurePosixPath(name).suffixes[-2:]
    return "".join(s for s in suffixes if s[1:].isalnum() and len(s) <= 8)


def _download(blob: RawBlob, target: Path, limit: int) -> tuple[str, bool]:
    """Copy the blob to ``target``: (sha256 of what was copied, whether it was all of it).

    Stops once more than ``limit`` bytes arrived: such a blob is refused, never stored whole.
    """
    digest = hashlib.sha256()
    copied = 0
    with blob.open() as src, target.open("wb") as dst:
        while chunk := src.read(1 << 20):
            copied += len(chunk)
            if copied > limit:
                return digest.hexdigest(), False
            digest.update(chunk)
            dst.write(chunk)
    return digest.hexdigest(), True


def _quarantine_unroutable(
    kept_from: Path | None,
    sha: str,
    drop: BlobDrop,
    source: str,
    code: str,
    staging: Path,
    note: str = "",
) -> ConditionResult:
    """A quarantine decided by the blob's name or size; ``kept_from`` is the downloaded copy to
    keep (``None``: the blob stays where it is and only the manifest is written)."""
    message = {
        "unsafe_name": "the blob name is not a safe {source}/{batch}/{file} path",
        "unknown_source": f"no source named by the blob path; known: {sorted(CONTRACTS)}",
        "too_large": "the blob is too large to condition",
    }[code] + note
    version = hashlib.sha256(f"{sha}|{source}|{code}|{ENGINE_VERSION}".encode()).hexdigest()[:20]
    manifest = {
        "schema": "conditioning-manifest/1",
        "status": "quarantined",
        "source": source,
        "dataset_version": version,
        "reason": {"code": code, "message": message},
        "input": {
            "name": drop.name,
            "etag": drop.etag,
            "sha256": sha,
            "bytes": kept_from.stat().st_size if kept_from else None,
        },
        "engine_version": ENGINE_VERSION,
        "quarantined_file": safe_file_name(drop.name) if kept_from else None,
    }
    files = []
    if kept_from is not None:
        kept = staging / "input"
        shutil.copyfile(kept_from, kept)
        files.append(StagedFile("input", safe_file_name(drop.name), kept, sha, kept.stat().st_size))
    return ConditionResult("quarantined", source, version, manifest, files, code, message)


# What reading a blob under a name storage mangles ends in (it addresses another path).
_NAME_TROUBLE = (NotFoundError, SettingsError, AccessDeniedError)


def _pin(blob: RawBlob, problem: str | None) -> tuple[BlobDrop, bool] | None:
    """(the drop, whether it can be read); ``None`` when a well-named blob is gone.

    A blob with an unsafe name may not be readable under it at all (storage addresses another
    path): it is then quarantined by its name, never retried.
    """
    try:
        return BlobDrop(blob.container, blob.name, blob.etag()), True
    except _NAME_TROUBLE as exc:
        if problem is None:
            if isinstance(exc, NotFoundError):
                return None
            raise
        return BlobDrop(blob.container, blob.name, None), False


@dataclass(frozen=True)
class _Fetched:
    sha: str
    state: str  # whole | too_large | unreadable


def _fetch(blob: RawBlob, raw: Path, limit: int, problem: str | None) -> _Fetched | str:
    """Download the blob to ``raw``; a ``str`` is the reason to ignore it instead."""
    try:
        sha, whole = _download(blob, raw, limit)
    except ConflictError:
        return "the blob changed while it was being read"
    except _NAME_TROUBLE as exc:
        if problem is None:
            if isinstance(exc, NotFoundError):
                return "the blob no longer exists"
            raise
        return _Fetched("", "unreadable")
    if not whole:
        return _Fetched(sha, "too_large")
    if raw.stat().st_size == 0:
        # A zero-byte create is often the first half of create + append; the real content
        # fires its own event. An empty file from the CLI is quarantined instead.
        return "empty blob"
    return _Fetched(sha, "whole")


def _publish(
    lake: DataLake, result: ConditionResult, containers: Mapping[str, str]
) -> tuple[list[str], str, str]:
    """Write the outputs; → what was written, the manifest's name and its sha256."""
    written: list[str] = []
    manifest = manifest_sha = ""
    for p in placements(result):
        container = containers[p.area]
        if p.path is not None:
            with p.path.open("rb") as fh:
                lake.write(container, p.name, fh, content_type=_content_type(p.name))
        else:
            assert p.data is not None
            lake.write(container, p.name, p.data, content_type="application/json")
        written.append(f"{container}/{p.name}")
        if p.name.endswith("manifest.json"):
            manifest = f"{container}/{p.name}"
            data = p.data if p.data is not None else p.path.read_bytes() if p.path else b""
            manifest_sha = hashlib.sha256(data).hexdigest()
    return written, manifest, manifest_sha


def _content_type(name: str) -> str:
    return "text/csv; charset=utf-8" if name.endswith(".csv") else "application/octet-stream"


def condition_blob(
    blob: RawBlob,
    lake: DataLake,
    *,
    conditioned_container: str,
    quarantine_container: str,
    registry: DatasetRegistry,
    signals: ConditionedSignals,
    mappings: Mapping[str, Sequence[SourceMapping]] | None = None,
    as_of: dt.date | None = None,
    options: EngineOptions | None = None,
    work_dir: Path | None = None,
    assets: DataAssets | None = None,
) -> ConditioningOutcome:
    """Condition ``blob`` and publish the outputs to ``lake`` (see the module docstring).

    A blob deleted before it is read, or overwritten while it is read, is ``ignored``: its
    newer version (if any) arrives as an event of its own. With ``assets``, conditioned data
    is also registered as a data asset (before the version is recorded, so a failed
    registration is retried with the redelivered blob).
    """
    source, problem = parse_blob_name(blob.name, blob.container)
    label = f"{blob.container}/{blob.name}"
    pinned = _pin(blob, problem)
    if pinned is None:
        return ConditioningOutcome("ignored", source, label, reason="the blob no longer exists")
    drop, readable = pinned
    if problem is None:
        known = registry.find_input(source, drop.name, drop.etag)
        if known is not None:
            return ConditioningOutcome(
                "unchanged", source, label, known.dataset_version, reason="redelivered blob"
            )
    catalog = mappings if mappings is not None else builtin_mappings()
    lake.ensure_container(conditioned_container)
    lake.ensure_container(quarantine_container)
    containers = {CONDITIONED: conditioned_container, "quarantine": quarantine_container}
    with tempfile.TemporaryDirectory(prefix="conditioning-", dir=work_dir) as tmp:
        # Keep the blob's extension: some readers (openpyxl) go by it.
        raw = Path(tmp) / f"raw{_safe_suffix(drop.name)}"
        limit = (options or EngineOptions()).limits.max_input_bytes
        fetched = _fetch(blob, raw, limit, problem) if readable else _Fetched("", "unreadable")
        if isinstance(fetched, str):
            return ConditioningOutcome("ignored", source, label, reason=fetched)
        sha = fetched.sha
        staging = Path(tmp) / "staging"
        staging.mkdir()
        existing: list[DatasetVersion] = []

        def seen(version: str) -> bool:
            entry = registry.get(source, version)
            if entry is not None:
                existing.append(entry)
            return entry is not None

        kept: Path | None = raw
        note = ""
        if fetched.state != "whole":
            # Identified by name and etag: what was read (if anything) is no identity of it.
            sha = hashlib.sha256(f"{drop.name}|{drop.etag}".encode()).hexdigest()
            kept = None
            if fetched.state == "too_large":
                problem = "too_large"
                note = f": over {limit:,} bytes; it stays in the raw container"
            else:
                note = "; it cannot be read under that name and stays in the raw container"
        if problem is not None:
            result: ConditionResult | None = _quarantine_unroutable(
                kept, sha, drop, source, problem, staging, note
            )
            if result is not None and seen(result.dataset_version):
                result = None
        else:
            candidates = list(catalog.get(source, ()))
            result = condition_file(
                raw,
                source,
                staging,
                candidates=candidates,
                input_name=drop.name,
                etag=drop.etag,
                input_sha256=sha,
                as_of=as_of,
                options=options,
                skip_if=seen,
            )
        if result is None:
            entry = existing[0]
            registry.remember_input(entry, drop.name, drop.etag)
            return ConditioningOutcome(
                "unchanged", source, label, entry.dataset_version, reason="content seen before"
            )
        written, manifest, manifest_sha = _publish(lake, result, containers)
    return _record(
        result, drop, source, label, written, (manifest, manifest_sha), registry, signals, assets
    )


def _record(
    result: ConditionResult,
    drop: BlobDrop,
    source: str,
    label: str,
    written: list[str],
    published_manifest: tuple[str, str],
    registry: DatasetRegistry,
    signals: ConditionedSignals,
    assets: DataAssets | None,
) -> ConditioningOutcome:
    manifest, manifest_sha = published_manifest
    m = result.manifest
    period = m.get("period") or {}
    now = dt.datetime.now(dt.UTC).isoformat()
    data_files = tuple(w for w in written if w.startswith(f"{manifest.split('/', 1)[0]}/"))
    entry = DatasetVersion(
        source=source,
        dataset_version=result.dataset_version,
        status=result.status,
        input_name=drop.name,
        input_etag=drop.etag,
        input_sha256=str(m["input"]["sha256"]),
        manifest=manifest,
        files=tuple(written),
        rows_in=int(m.get("rows_in", 0)),
        rows_out=int(m.get("rows_out", 0)),
        rows_rejected=int(m.get("rows_rejected", 0)),
        period_start=period.get("start"),
        period_end=period.get("end"),
        reason_code=result.reason_code,
        registered_at=now,
    )
    if assets is not None and entry.status == "conditioned":
        assets.register(entry, manifest_sha256=manifest_sha)
    registry.register(entry)
    if result.usable:
        signals.publish(
            DataConditioned(
                source=source,
                dataset_version=result.dataset_version,
                manifest=manifest,
                rows_out=entry.rows_out,
                period_start=entry.period_start,
                period_end=entry.period_end,
                occurred_at=now,
                files=tuple(f for f in data_files if f.endswith(".csv")),
            )
        )
    return ConditioningOutcome(
        result.status,
        source,
        label,
        result.dataset_version,
        entry.rows_in,
        entry.rows_out,
        entry.rows_rejected,
        result.reason_code,
        result.reason,
        tuple(written),
        {str(k): int(v) for k, v in (m.get("reject_counts") or {}).items()},
    )
