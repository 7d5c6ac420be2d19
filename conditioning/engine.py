"""The streaming engine: one raw file -> staged standard CSV parts, rejects and a manifest.

``condition_file`` reads the input in bounded batches, normalises each batch, appends accepted
records to ``part-NNNNN.csv`` files and rejected rows to ``rejects.csv`` in a local staging
directory, then resolves duplicate keys across the whole file and writes ``manifest.json``.
Nothing is published here: callers (the CLI, the blob service) move the staged files to their
final names only once everything succeeded, so readers never see a partial output.

Accounting invariant, checked before the manifest is written:
``rows_in == rows_out + rows_rejected``. A row is the unit of input; with an ``emit`` mapping one
accepted row may give several records (``records_out``).

An unusable file (empty, binary, undecodable, missing columns, damaged compression…) gives a
result with ``status == "quarantined"`` and a reason; the caller keeps the whole file aside.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import shutil
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Generic, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from adapters.errors import BadInputError, MlopsError
from conditioning.contracts import Contract, contract_for
from conditioning.dedupe import DuplicateFinder, Spill, key_hashes
from conditioning.mapping import SourceMapping, choose_mapping
from conditioning.normalize import (
    Rejects,
    csv_line,
    neutralise_formulas,
    normalize,
    standard_schema,
)
from conditioning.readers import (
    DEFAULT_BATCH_BYTES,
    DEFAULT_BLOCK_BYTES,
    FastPathUnsuitable,
    FileProfile,
    RawBatch,
    ReadLimits,
    csv_strategies,
    iter_batches,
    profile_file,
    sniff_delimiter,
)


def _memory_pool() -> pa.MemoryPool:
    """The Arrow allocator for the process: jemalloc where the build has it, else the system's.

    Arrow's default (mimalloc) keeps pages freed by one batch for later ones, per thread; with
    batches prepared on several threads that lifted the peak resident memory of a 250 MB drop
    by well over 100 MB. jemalloc hands freed pages back on its own, without the whole-heap
    trim the system allocator needs (which cost more CPU than the conditioning it followed).
    """
    try:
        return pa.jemalloc_memory_pool()
    except NotImplementedError:
        return pa.system_memory_pool()


# The engine is the app's only Arrow user, so it chooses the process's default pool.
pa.set_memory_pool(_memory_pool())

log = logging.getLogger(__name__)

ENGINE_VERSION = "1"
MANIFEST_SCHEMA = "conditioning-manifest/1"
DEFAULT_PART_BYTES = 256 << 20
# A file refused as too large is copied into quarantine only up to this size (bombs are small;
# a file too big to condition is too big to copy).
_KEEP_REFUSED_BYTES = 256 << 20
# Batches prepared at once (one per core) and read but not yet appended: what bounds memory.
_WORKERS = 2
_IN_FLIGHT = 3
# Rows the CSV writer formats at a time (the output does not depend on it).
_CSV_WRITE_ROWS = 8192
_T = TypeVar("_T")
_In = TypeVar("_In")
_Out = TypeVar("_Out")
REJECT_COLUMNS = ("row_number", "reason_code", "column", "message", "original_row")


@dataclass(frozen=True)
class EngineOptions:
    """Tuning knobs; defaults suit files from kilobytes to many gigabytes. ``limits`` bound
    what one input may cost (bytes, expansion, record and header sizes)."""

    block_bytes: int = DEFAULT_BLOCK_BYTES
    batch_bytes: int = DEFAULT_BATCH_BYTES
    limits: ReadLimits = field(default_factory=ReadLimits)
    part_bytes: int = DEFAULT_PART_BYTES
    dedupe_partition_bytes: int = 32 << 20


@dataclass
class StagedFile:
    """A staged output: ``kind`` is part/rejects/manifest/input; ``name`` its final file name."""

    kind: str
    name: str
    path: Path
    sha256: str = ""
    bytes: int = 0
    rows: int = 0


@dataclass
class ConditionResult:
    """What happened to one input. ``files`` are staged locally, ready to publish."""

    status: str
    source: str
    dataset_version: str
    manifest: dict[str, Any]
    files: list[StagedFile] = field(default_factory=list)
    reason_code: str | None = None
    reason: str | None = None

    @property
    def usable(self) -> bool:
        return self.status == "conditioned"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def dataset_version(input_sha256: str, source: str, mapping_sha256: str | None) -> str:
    """A version id that depends only on content: same bytes + same mapping -> same version."""
    material = "|".join(
        (input_sha256, source, mapping_sha256 or "-", contract_for(source).version, ENGINE_VERSION)
    )
    return hashlib.sha256(material.encode()).hexdigest()[:20]


def safe_file_name(name: str) -> str:
    """The last path segment of ``name`` reduced to a harmless file name."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in base).lstrip(".")
    return cleaned[:100] or "input"


class _HashingWriter:
    """A binary sink that counts and hashes what pyarrow's CSV writer writes through it."""

    def __init__(self, fh: IO[bytes]) -> None:
        self._fh = fh
        self.size = 0
        self.closed = False
        self.digest = hashlib.sha256()

    def write(self, data: bytes | memoryview) -> int:
        self._fh.write(data)
        self.digest.update(data)
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()
        self.closed = True


def _csv_bytes(table: pa.Table, header: bool = False) -> pa.Buffer:
    """``table`` as CSV text in memory, formatted exactly as the part and rejects files are."""
    sink = pa.BufferOutputStream()
    pacsv.write_csv(table, sink, write_options=_write_options(header))
    return sink.getvalue()


# Whole numbers below this magnitude print the same as a float and as an integer; from 1e10
# on Arrow prints floats in exponent form ("1e+10").
_PLAIN_INTEGRAL = 1e10


def _integral_as_int(column: pa.Array) -> pa.Array:
    """A float column holding only whole numbers as int64 when that prints the same bytes
    (formatting integers costs half as much as formatting floats); else the column as is."""
    values = np.asarray(column.to_numpy(zero_copy_only=False))
    if column.null_count:
        values = np.where(np.asarray(column.is_valid().to_numpy(zero_copy_only=False)), values, 0)
    if not (np.abs(values) < _PLAIN_INTEGRAL).all() or not (values == np.trunc(values)).all():
        return column
    if (np.signbit(values) & (values == 0)).any():  # -0.0 prints "-0"
        return column
    return pc.cast(column, pa.int64(), safe=False)


def _formatted(table: pa.Table) -> pa.Table:
    """``table`` arranged to format faster as CSV, giving the same text: whole-number floats
    are formatted as integers."""
    columns = [
        _integral_as_int(column.combine_chunks()) if pa.types.is_float64(column.type) else column
        for column in table.columns
    ]
    return pa.table(columns, names=table.column_names)


def _write_options(header: bool = True) -> pacsv.WriteOptions:
    return pacsv.WriteOptions(
        include_header=header, quoting_style="needed", batch_size=_CSV_WRITE_ROWS
    )


def _reject_table(rejects: Rejects) -> pa.Table:
    table = pa.table(
        {
            "row_number": pa.array(rejects.row_numbers, pa.int64()),
            "reason_code": pa.array(rejects.codes, pa.string()),
            "column": pa.array(rejects.columns, pa.string()),
            "message": neutralise_formulas(pa.array(rejects.messages, pa.string())),
            "original_row": neutralise_formulas(pa.array(rejects.originals, pa.string())),
        }
    )
    return table.sort_by("row_number")


@dataclass
class _Prepared:
    """One batch normalised and formatted off the main thread, waiting to be appended in order.

    ``records`` and ``rejects`` are CSV text without a header; ``record_rows`` holds one entry
    per record and ``keys`` their key hashes sorted into the duplicate finder's partitions.
    """

    rows_in: int
    rows_accepted: int
    records: pa.Buffer | None
    record_count: int
    record_rows: np.ndarray[Any, Any]
    keys: Spill
    period: tuple[dt.date | None, dt.date | None]
    rejects: list[pa.Buffer]
    reject_codes: list[str]


def _prepare(
    batch: RawBatch,
    chosen: SourceMapping,
    contract: Contract,
    as_of: dt.date,
    max_field_bytes: int,
    partitions: int,
) -> _Prepared:
    """Everything about one batch that does not depend on the batches before it. Pure, and
    mostly Arrow and numpy work that releases the GIL, so several batches run at once."""
    rejects: list[pa.Buffer] = []
    codes: list[str] = []
    if batch.rejects:
        pre = Rejects()
        for r in batch.rejects:
            pre.add(r.row_number, r.code, "", r.message, r.original)
        rejects.append(_csv_bytes(_reject_table(pre)))
        codes += pre.codes
    if not batch.table.num_rows:
        empty = np.empty(0, np.int64)
        return _Prepared(
            len(batch.rejects),
            0,
            None,
            0,
            empty,
            DuplicateFinder.spill(empty.view(np.uint64), empty, partitions),
            (None, None),
            rejects,
            codes,
        )
    result = normalize(batch.table, batch.row_numbers, chosen, contract, as_of, max_field_bytes)
    if len(result.rejects):
        rejects.append(_csv_bytes(_reject_table(result.rejects)))
        codes += result.rejects.codes
    table = result.table
    period: tuple[dt.date | None, dt.date | None] = (None, None)
    if contract.period_column and table.num_rows:
        mm = pc.min_max(table.column(contract.period_column)).as_py()
        period = (mm["min"], mm["max"])
    record_rows = np.asarray(result.record_rows, dtype=np.int64)
    hashes = key_hashes(table, contract.key, result.encodings)
    return _Prepared(
        rows_in=batch.table.num_rows + len(batch.rejects),
        rows_accepted=result.rows_accepted,
        records=_csv_bytes(_formatted(table)) if table.num_rows else None,
        record_count=table.num_rows,
        record_rows=record_rows,
        keys=DuplicateFinder.spill(hashes, record_rows, partitions),
        period=period,
        rejects=rejects,
        reject_codes=codes,
    )


class _Outputs:
    """Staged part files (rolled over by size), the rejects file and the duplicate finder.

    Batches arrive already formatted (``_Prepared``); appending them is sequential and cheap:
    file writes, hashing and spilling keys.
    """

    def __init__(
        self, staging: Path, contract: Contract, options: EngineOptions, parts: int
    ) -> None:
        self.staging = staging
        self.contract = contract
        self.options = options
        self.schema = standard_schema(contract)
        self.reject_schema = pa.schema(
            [pa.field("row_number", pa.int64())]
            + [pa.field(c, pa.string()) for c in REJECT_COLUMNS[1:]]
        )
        self._header = _csv_bytes(self.schema.empty_table(), header=True)
        self.parts: list[StagedFile] = []
        self._sink: _HashingWriter | None = None
        self._rows_file: IO[bytes] | None = None
        self._pos = 0
        self.rejects_path = staging / "rejects.csv"
        self._rejects_sink = _HashingWriter(self.rejects_path.open("wb"))
        self._rejects_sink.write(_csv_bytes(self.reject_schema.empty_table(), header=True))
        self.rows_in = self.rows_accepted = 0
        self.rejected = 0
        self.reject_counts: dict[str, int] = {}
        self.dupes = DuplicateFinder(staging / "keys", parts)
        self.period: tuple[dt.date | None, dt.date | None] = (None, None)

    @staticmethod
    def _csv_writer(sink: _HashingWriter, schema: pa.Schema) -> Any:
        return pacsv.CSVWriter(sink, schema, write_options=_write_options())

    def _open_part(self) -> None:
        path = self.staging / f"part-{len(self.parts):05d}.csv"
        self.parts.append(StagedFile("part", path.name, path))
        self._sink = _HashingWriter(path.open("wb"))
        self._sink.write(self._header)
        self._rows_file = self.rows_path(len(self.parts) - 1).open("wb")
        self._pos = 0

    def _close_part(self) -> None:
        if self._sink is not None:
            self._sink.close()
            self.parts[-1].sha256 = self._sink.digest.hexdigest()
            self.parts[-1].bytes = self._sink.size
            self._sink = None
        if self._rows_file is not None:
            self._rows_file.close()
            self._rows_file = None

    def append(self, batch: _Prepared) -> None:
        """Add one prepared batch: its rejects, then its records, in input order."""
        self.rows_in += batch.rows_in
        self.rows_accepted += batch.rows_accepted
        for chunk in batch.rejects:
            self._rejects_sink.write(chunk)
        self._count_rejects(batch.reject_codes)
        if self._sink is None or self._sink.size >= self.options.part_bytes:
            self._close_part()
            self._open_part()
        if not batch.record_count or batch.records is None:
            return
        assert self._sink is not None and self._rows_file is not None
        self._sink.write(batch.records)
        index = len(self.parts) - 1
        self.parts[index].rows += batch.record_count
        self._rows_file.write(batch.record_rows.astype("<i8", copy=False).data)
        self.dupes.add(batch.keys, index, self._pos)
        self._pos += batch.record_count
        lo, hi = self.period
        if batch.period[0] is not None:
            lo = batch.period[0] if lo is None else min(lo, batch.period[0])
            hi = batch.period[1] if hi is None else max(hi, batch.period[1])  # type: ignore[type-var]
        self.period = (lo, hi)

    def _count_rejects(self, codes: list[str]) -> None:
        self.rejected += len(codes)
        for code in codes:
            self.reject_counts[code] = self.reject_counts.get(code, 0) + 1

    def rows_path(self, index: int) -> Path:
        """Sidecar file with the input row number of every record of part ``index``."""
        return self.staging / f"part-{index:05d}.rows"

    def add_rejects(self, rejects: Rejects) -> None:
        if not len(rejects):
            return
        self._rejects_sink.write(_csv_bytes(_reject_table(rejects)))
        self._count_rejects(rejects.codes)

    def finish_stream(self) -> None:
        if not self.parts:
            self._open_part()
        self._close_part()

    def close_rejects(self) -> None:
        self._rejects_sink.close()


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _resolve_duplicates(out: _Outputs) -> int:
    """Drop every record of rows whose key repeats an earlier row; returns rows removed.

    Only parts holding a duplicate or its first occurrence are read again, batch by batch.
    """

    dupes = out.dupes.duplicates()
    if not dupes:
        return 0
    dup_rows = {d.row: d.first_row for d in dupes}
    dup_array = np.array(sorted(dup_rows), dtype=np.int64)
    wanted = np.array(sorted(set(dup_rows) | set(dup_rows.values())), dtype=np.int64)
    lines: dict[int, list[str]] = {}
    # Read back with the standard types so the rewritten part is formatted byte for byte like
    # the others (an unquoted empty field is null; a quoted one is an empty text).
    convert = pacsv.ConvertOptions(
        column_types={f.name: f.type for f in out.schema},
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
    )
    for index, part in enumerate(out.parts):
        rows_file = out.rows_path(index)
        rows = np.fromfile(rows_file, dtype="<i8") if rows_file.exists() else np.empty(0, np.int64)
        if not np.isin(rows, wanted).any():
            continue
        rewritten = part.path.with_suffix(".tmp")
        kept_rows = 0
        with rewritten.open("wb") as fh:
            sink = _HashingWriter(fh)
            writer = out._csv_writer(sink, out.schema)
            offset = 0
            for batch in pacsv.open_csv(part.path, convert_options=convert):
                batch_rows = rows[offset : offset + batch.num_rows]
                offset += batch.num_rows
                involved = np.flatnonzero(np.isin(batch_rows, wanted))
                if involved.size:
                    taken = batch.take(pa.array(involved))
                    cols = [taken.column(i).to_pylist() for i in range(taken.num_columns)]
                    for k, i in enumerate(involved.tolist()):
                        row = int(batch_rows[i])
                        lines.setdefault(row, []).append(csv_line([_text(c[k]) for c in cols]))
                keep = ~np.isin(batch_rows, dup_array)
                kept = batch.filter(pa.array(keep))
                writer.write_batch(kept)
                kept_rows += kept.num_rows
            writer.close()
        rewritten.replace(part.path)
        part.rows = kept_rows
        part.sha256 = sink.digest.hexdigest()
        part.bytes = sink.size
    rejects = Rejects()
    key = ", ".join(out.contract.key)
    for row, first in sorted(dup_rows.items()):
        same = lines.get(row) == lines.get(first)
        code = "duplicate_row" if same else "duplicate_key"
        what = "repeats row" if same else "has the same key as row"
        rejects.add(
            row,
            code,
            key,
            f"{what} {first} ({key}); the first occurrence is kept",
            " | ".join(lines.get(row, [])),
        )
    out.add_rejects(rejects)
    return len(dup_rows)


def _quarantine(
    input_path: Path,
    input_name: str,
    source: str,
    staging: Path,
    input_meta: dict[str, Any],
    code: str,
    message: str,
    started: float,
    mapping: SourceMapping | None = None,
) -> ConditionResult:
    """The whole file set aside with a manifest giving the reason; a file refused for its size
    is not copied (the manifest names it, and it stays where it was)."""
    version = dataset_version(input_meta["sha256"], source, mapping.sha256 if mapping else None)
    for child in staging.iterdir():
        if child.is_dir():
            shutil.rmtree(child)
        else:
            child.unlink()
    keep = code != "too_large" or input_meta["bytes"] <= _KEEP_REFUSED_BYTES
    manifest: dict[str, Any] = {
        "schema": MANIFEST_SCHEMA,
        "status": "quarantined",
        "source": source,
        "dataset_version": version,
        "reason": {"code": code, "message": message},
        "input": input_meta,
        "mapping": {"name": mapping.name, "sha256": mapping.sha256} if mapping else None,
        "contract": {"source": source, "version": contract_for(source).version},
        "engine_version": ENGINE_VERSION,
        "quarantined_file": safe_file_name(input_name) if keep else None,
        "timings_s": {"total": round(time.perf_counter() - started, 4)},
    }
    files = []
    if keep:
        kept = staging / "input"
        shutil.copyfile(input_path, kept)
        files.append(
            StagedFile(
                "input", safe_file_name(input_name), kept, input_meta["sha256"], input_meta["bytes"]
            )
        )
    return ConditionResult("quarantined", source, version, manifest, files, code, message)


def _strategies(
    input_path: Path, profile: FileProfile, options: EngineOptions, sheet: str | None
) -> list[tuple[str, Callable[[], Iterator[RawBatch]]]]:
    if profile.format == "csv":
        return csv_strategies(
            input_path,
            profile,
            block_bytes=options.block_bytes,
            limits=options.limits,
            batch_bytes=options.batch_bytes,
        )
    return [
        (
            profile.format,
            lambda: iter_batches(input_path, profile, sheet=sheet, limits=options.limits),
        )
    ]


def choose_and_profile(
    input_path: Path,
    source: str,
    mapping: SourceMapping | None,
    candidates: Sequence[SourceMapping],
    limits: ReadLimits | None = None,
) -> tuple[FileProfile, SourceMapping]:
    """Sniff the file and pick the mapping; ``BadInputError`` when none fits."""
    limits = limits or ReadLimits()
    if mapping is not None:
        read = mapping.read
        profile = profile_file(
            input_path,
            fmt=read.format,
            delimiter=read.delimiter,
            encoding=read.encoding,
            sheet=read.sheet,
            limits=limits,
        )
        chosen = mapping
    else:
        profile = profile_file(input_path, limits=limits)
        try:
            chosen = choose_mapping(candidates, profile.header)
        except KeyError as exc:
            raise BadInputError(
                f"no {source} mapping fits the header {list(profile.header)}: {exc.args[0]}",
                code="missing_columns",
            ) from exc
        read = chosen.read
        if (read.delimiter and read.delimiter != profile.delimiter) or read.encoding:
            profile = profile_file(
                input_path,
                fmt=read.format,
                delimiter=read.delimiter,
                encoding=read.encoding,
                sheet=read.sheet,
                limits=limits,
            )
    missing = chosen.missing_columns(profile.header)
    if missing:
        if profile.format == "csv" and len(profile.header) == 1 and chosen.read.delimiter:
            with input_path.open("rb") as fh:
                head = fh.read(65536).decode(profile.encoding or "utf-8", errors="ignore")
            guess = sniff_delimiter(head)
            if guess != chosen.read.delimiter:
                raise BadInputError(
                    f"the header splits into one column with delimiter {chosen.read.delimiter!r}; "
                    f"the file looks {guess!r}-delimited",
                    code="wrong_delimiter",
                )
        raise BadInputError(
            f"required columns {missing} are missing from the header {list(profile.header)}",
            code="missing_columns",
        )
    return profile, chosen


class Pipeline(Generic[_In, _Out]):
    """Runs ``prepare`` on worker threads and hands the results to ``append`` in input order.

    Arrow's kernels, its CSV writer and numpy release the GIL, so batches are normalised and
    formatted on both cores while the caller reads the next one and appends finished ones. At
    most ``in_flight`` items are submitted but not yet appended, which bounds memory whatever
    the file size; an error of ``prepare`` is raised in the caller when its item's turn comes,
    and nothing after it is appended.
    """

    def __init__(
        self,
        prepare: Callable[[_In], _Out],
        append: Callable[[_Out], None],
        *,
        workers: int = _WORKERS,
        in_flight: int = _IN_FLIGHT,
    ) -> None:
        self._prepare = prepare
        self._append = append
        self._in_flight = max(1, in_flight)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="conditioning")
        self._pending: deque[Future[_Out]] = deque()

    def submit(self, item: _In) -> None:
        while len(self._pending) >= self._in_flight:
            self._append(self._pending.popleft().result())
        self._pending.append(self._pool.submit(self._prepare, item))

    def finish(self) -> None:
        """Append every item still in flight."""
        while self._pending:
            self._append(self._pending.popleft().result())

    def close(self) -> None:
        """Stop: items not yet started are dropped; running ones end before this returns."""
        for future in self._pending:
            future.cancel()
        self._pending.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class _Streamed:
    out: _Outputs
    reader: str
    rows_in: int
    rows_accepted: int


def _stream(
    input_path: Path,
    profile: FileProfile,
    chosen: SourceMapping,
    contract: Contract,
    staging: Path,
    as_of: dt.date,
    options: EngineOptions,
) -> _Streamed:
    """Read, normalise and stage every batch; the next reader is tried when one gives up.

    Raises ``BadInputError`` when the file turns out unusable part-way.
    """
    partitions = max(1, input_path.stat().st_size // options.dedupe_partition_bytes)
    max_field = options.limits.max_field_bytes

    def prepare(batch: RawBatch) -> _Prepared:
        return _prepare(batch, chosen, contract, as_of, max_field, partitions)

    for reader_name, make in _strategies(input_path, profile, options, chosen.read.sheet):
        run_dir = staging / "work"
        if run_dir.exists():
            shutil.rmtree(run_dir)
        run_dir.mkdir()
        out = _Outputs(run_dir, contract, options, partitions)
        pipeline: Pipeline[RawBatch, _Prepared] = Pipeline(prepare, out.append)
        batches = make()
        try:
            for batch in batches:
                pipeline.submit(batch)
            pipeline.finish()
            out.finish_stream()
        except FastPathUnsuitable:
            pipeline.close()
            out.finish_stream()
            out.close_rejects()
            continue
        except Exception:
            pipeline.close()
            with contextlib.suppress(Exception):
                out.finish_stream()
            out.close_rejects()
            raise
        finally:
            pipeline.close()
            close = getattr(batches, "close", None)
            if callable(close):
                close()
        return _Streamed(out, reader_name, out.rows_in, out.rows_accepted)
    raise AssertionError("the careful reader never gives up; this is unreachable")


def _guarded(step: Callable[[], _T]) -> _T:
    """Run a reading step; an error no reader named is still the input's fault, not a reason
    to retry: it becomes ``BadInputError`` (``unreadable_input``) and is logged with its trace.

    Failures of the outside world (``OSError`` of the staging disk, ``MemoryError``, the
    project's other errors) propagate so the platform retries.
    """
    try:
        return step()
    except (BadInputError, OSError, MemoryError):
        raise
    except MlopsError:
        raise
    except Exception as exc:
        log.exception("conditioning failed on an error no reader names; the file is refused")
        raise BadInputError(
            f"the file could not be read: {type(exc).__name__}: {str(exc)[:300]}",
            code="unreadable_input",
        ) from exc


def condition_file(
    input_path: Path,
    source: str,
    staging: Path,
    *,
    mapping: SourceMapping | None = None,
    candidates: Sequence[SourceMapping] = (),
    input_name: str | None = None,
    etag: str | None = None,
    input_sha256: str | None = None,
    as_of: dt.date | None = None,
    options: EngineOptions | None = None,
    skip_if: Callable[[str], bool] | None = None,
) -> ConditionResult | None:
    """Condition ``input_path`` for ``source`` into the empty directory ``staging``.

    ``mapping`` pins the vendor layout; otherwise the first of ``candidates`` whose columns fit
    the header is used. ``skip_if(version)`` is asked once the content-derived version is known;
    when it answers True nothing is processed and ``None`` is returned (redelivery).
    Raises only for programming errors and I/O failures of the staging disk; bad input is a
    quarantined result.
    """
    options = options or EngineOptions()
    as_of = as_of or dt.datetime.now(dt.UTC).date()
    started = time.perf_counter()
    contract = contract_for(source)
    staging.mkdir(parents=True, exist_ok=True)
    name = input_name or input_path.name
    size = input_path.stat().st_size
    input_meta: dict[str, Any] = {"name": name, "etag": etag, "sha256": input_sha256, "bytes": size}

    def refuse(exc: BadInputError, chosen: SourceMapping | None) -> ConditionResult:
        return _quarantine(
            input_path, name, source, staging, input_meta, exc.code, str(exc), started, chosen
        )

    if size > options.limits.max_input_bytes and input_sha256 is None:
        # Hashing a file this size would take minutes; its identity is its name and size.
        input_meta["sha256"] = hashlib.sha256(f"{name}|{size}|{etag}".encode()).hexdigest()
    input_meta["sha256"] = input_meta["sha256"] or sha256_file(input_path)
    try:
        profile, chosen = _guarded(
            lambda: choose_and_profile(input_path, source, mapping, candidates, options.limits)
        )
    except BadInputError as exc:
        version = dataset_version(input_meta["sha256"], source, mapping.sha256 if mapping else None)
        if skip_if is not None and skip_if(version):
            return None
        return refuse(exc, mapping)
    input_meta.update(
        format=profile.format,
        compression=profile.compression,
        encoding=profile.encoding,
        delimiter=profile.delimiter,
    )
    version = dataset_version(input_meta["sha256"], source, chosen.sha256)
    if skip_if is not None and skip_if(version):
        return None
    timings = {"profile": time.perf_counter() - started}
    try:
        streamed = _guarded(
            lambda: _stream(input_path, profile, chosen, contract, staging, as_of, options)
        )
    except BadInputError as exc:
        return refuse(exc, chosen)
    out = streamed.out
    timings["stream"] = time.perf_counter() - started - timings["profile"]
    duplicates = _resolve_duplicates(out)
    out.close_rejects()
    rows_out = streamed.rows_accepted - duplicates
    if streamed.rows_in != rows_out + out.rejected:
        raise AssertionError(
            f"row accounting broken: {streamed.rows_in} in, {rows_out} out, {out.rejected} rejected"
        )
    rejects_file = StagedFile(
        "rejects",
        "rejects.csv",
        out.rejects_path,
        sha256_file(out.rejects_path),
        out.rejects_path.stat().st_size,
        out.rejected,
    )
    timings["dedupe"] = time.perf_counter() - started - timings["profile"] - timings["stream"]
    timings["total"] = time.perf_counter() - started
    used = {c.lower() for c in chosen.raw_columns}
    lo, hi = out.period
    manifest: dict[str, Any] = {
        "schema": MANIFEST_SCHEMA,
        "status": "conditioned",
        "source": source,
        "dataset_version": version,
        "input": input_meta,
        "mapping": {"name": chosen.name, "sha256": chosen.sha256},
        "contract": {
            "source": source,
            "version": contract.version,
            "columns": list(contract.names),
        },
        "engine_version": ENGINE_VERSION,
        "reader": streamed.reader,
        "as_of": as_of.isoformat(),
        "rows_in": streamed.rows_in,
        "rows_out": rows_out,
        "rows_rejected": out.rejected,
        "records_out": sum(p.rows for p in out.parts),
        "reject_counts": dict(sorted(out.reject_counts.items())),
        "ignored_columns": [h for h in profile.header if h.lower() not in used],
        "period": {"start": lo.isoformat() if lo else None, "end": hi.isoformat() if hi else None},
        "outputs": [
            {"name": p.name, "sha256": p.sha256, "bytes": p.bytes, "records": p.rows}
            for p in out.parts
        ],
        "rejects": {"name": rejects_file.name, "sha256": rejects_file.sha256, "rows": out.rejected},
        "timings_s": {k: round(v, 4) for k, v in timings.items()},
    }
    return ConditionResult("conditioned", source, version, manifest, [*out.parts, rejects_file])


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=False) + "\n").encode()
