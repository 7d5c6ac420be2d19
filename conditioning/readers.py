"""Readers: any supported raw file becomes a stream of bounded batches of text columns.

Every reader yields ``RawBatch`` objects: the raw values as Arrow string arrays (named by the
file's header), the 1-based row number of each row, and the rows that could not even be split
into fields (ragged rows, oversized fields, broken JSON lines) as ``RawReject``s. Nothing is
typed here: typing and validation belong to ``conditioning.normalize``, so a reject always shows
what the file really said.

Row numbers count records as a spreadsheet shows them: in CSV and Excel files the header is row 1
and the first data row is row 2; JSON Lines use the line number; Parquet the record position.

CSV is read by pyarrow's streaming reader first (fast, multithreaded conversion). A file that the
fast reader cannot split cleanly (ragged rows, a field larger than a block) is read again by the
careful reader, which handles every quirk row by row. An unusable file raises
``BadInputError`` with a reason ``code``; nothing is ever half-read silently.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import datetime as dt
import gzip
import io
import json
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

import numpy as np
import openpyxl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from adapters.errors import BadInputError

SAMPLE_BYTES = 1 << 20
DEFAULT_BLOCK_BYTES = 1 << 20
MAX_FIELD_BYTES = 1 << 20
CAREFUL_BATCH_ROWS = 50_000
_DELIMITERS = (",", ";", "\t", "|")


@dataclass(frozen=True)
class RawReject:
    """A row rejected before it had fields: ``original`` is its text (possibly shortened)."""

    row_number: int
    code: str
    message: str
    original: str


@dataclass
class RawBatch:
    """A bounded slice of the input: text columns plus the row number of each row."""

    table: pa.Table
    row_numbers: np.ndarray[Any, Any]
    rejects: list[RawReject] = field(default_factory=list)


@dataclass(frozen=True)
class FileProfile:
    """What sniffing found out about a file; recorded in the manifest."""

    format: str
    compression: str | None
    encoding: str | None
    delimiter: str | None
    header: tuple[str, ...]


def _open_binary(path: Path) -> IO[bytes]:
    with path.open("rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return cast(IO[bytes], gzip.open(path, "rb"))
    return path.open("rb")


def _read_sample(path: Path) -> tuple[bytes, str | None]:
    compression = None
    with path.open("rb") as fh:
        head = fh.read(4)
    if head[:2] == b"\x1f\x8b":
        compression = "gzip"
    try:
        with _open_binary(path) as fh:
            return fh.read(SAMPLE_BYTES), compression
    except (EOFError, OSError, zlib.error) as exc:
        raise BadInputError(
            f"compressed stream is damaged or truncated: {exc}", code="unreadable_compression"
        ) from exc


def detect_encoding(sample: bytes, complete: bool) -> str:
    """The text encoding of ``sample``: a BOM wins, then UTF-8, then CP1252/Latin-1."""
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    try:
        sample.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError as exc:
        # The sample may end inside a multi-byte character; that is not evidence of another code.
        if not complete and exc.start >= len(sample) - 3:
            return "utf-8"
    if any(0x80 <= b <= 0x9F for b in sample):
        try:
            sample.decode("cp1252")
            return "cp1252"
        except UnicodeDecodeError:
            pass
    return "latin-1"


def _looks_binary(sample: bytes) -> bool:
    if not sample:
        return False
    if b"\x00" in sample[:8192]:
        return True
    controls = sum(1 for b in sample[:8192] if b < 32 and b not in (9, 10, 13))
    return controls > len(sample[:8192]) * 0.05


def sniff_delimiter(text: str) -> str:
    """The delimiter that splits the first lines of ``text`` most consistently."""
    lines = text.splitlines()[:50]
    best, best_score = ",", (0.0, 0)
    for delimiter in _DELIMITERS:
        rows = [r for r in csv.reader(lines, delimiter=delimiter) if r]
        if not rows or len(rows[0]) < 2:
            continue
        width = len(rows[0])
        consistent = sum(1 for r in rows if len(r) == width) / len(rows)
        score = (consistent, width)
        if score > best_score:
            best, best_score = delimiter, score
    return best


def profile_file(
    path: Path,
    *,
    fmt: str = "auto",
    delimiter: str | None = None,
    encoding: str | None = None,
    sheet: str | None = None,
) -> FileProfile:
    """Find format, compression, encoding, delimiter and header; ``BadInputError`` if unusable."""
    sample, compression = _read_sample(path)
    if not sample:
        raise BadInputError("the file is empty", code="empty_file")
    utf16 = sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
    if fmt == "auto":
        if sample.startswith(b"PAR1"):
            fmt = "parquet"
        elif sample.startswith(b"PK\x03\x04"):
            fmt = "xlsx"
        elif not utf16 and _looks_binary(sample):
            raise BadInputError(
                "the file is binary, not text, Parquet or Excel", code="not_tabular"
            )
        elif not utf16 and sample.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{"):
            fmt = "jsonl"
        else:
            fmt = "csv"
    if fmt == "parquet":
        return FileProfile("parquet", compression, None, None, _parquet_header(path))
    if fmt == "xlsx":
        return FileProfile("xlsx", compression, None, None, _xlsx_header(path, sheet))
    if not utf16 and _looks_binary(sample):
        raise BadInputError("the file is binary, not text", code="not_tabular")
    complete = len(sample) < SAMPLE_BYTES
    enc = encoding or detect_encoding(sample, complete)
    try:
        text = sample.decode(enc, errors="strict" if complete else "ignore")
    except (UnicodeDecodeError, LookupError) as exc:
        raise BadInputError(f"the file is not valid {enc}: {exc}", code="encoding_error") from exc
    text = text.lstrip("\ufeff")
    if fmt == "jsonl":
        return FileProfile("jsonl", compression, enc, None, _jsonl_header(text))
    if not text.strip():
        raise BadInputError("the file has no header line", code="empty_file")
    sep = delimiter or sniff_delimiter(text)
    first = next(csv.reader(io.StringIO(text), delimiter=sep), [])
    header = tuple(h.strip().lstrip("\ufeff") for h in first)
    _check_header(header)
    return FileProfile("csv", compression, enc, sep, header)


def _check_header(header: tuple[str, ...]) -> None:
    if not header or all(not h for h in header):
        raise BadInputError("the header line is empty", code="missing_header")
    lowered = [h.lower() for h in header]
    dupes = sorted({h for h in lowered if lowered.count(h) > 1})
    if dupes:
        raise BadInputError(f"header names repeat: {dupes}", code="duplicate_columns")


def _jsonl_header(text: str) -> tuple[str, ...]:
    for line in text.splitlines():
        if line.strip():
            try:
                first = json.loads(line)
            except json.JSONDecodeError as exc:
                raise BadInputError(
                    f"first JSON line is not valid JSON: {exc}", code="not_tabular"
                ) from exc
            if not isinstance(first, dict):
                raise BadInputError("JSON Lines records must be objects", code="not_tabular")
            return tuple(str(k) for k in first)
    raise BadInputError("the file has no records", code="empty_file")


def _parquet_header(path: Path) -> tuple[str, ...]:
    try:
        return tuple(pq.ParquetFile(path).schema_arrow.names)
    except Exception as exc:
        raise BadInputError(f"unreadable Parquet file: {exc}", code="unreadable_parquet") from exc


def _open_sheet(path: Path, sheet: str | None) -> Any:
    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
        return book, (book[sheet] if sheet else book.worksheets[0])
    except Exception as exc:
        raise BadInputError(f"unreadable Excel workbook: {exc}", code="unreadable_xlsx") from exc


def _xlsx_header(path: Path, sheet: str | None) -> tuple[str, ...]:
    book, ws = _open_sheet(path, sheet)
    try:
        for row in ws.iter_rows(max_row=1, values_only=True):
            header = tuple("" if v is None else str(v).strip() for v in row)
            while header and not header[-1]:
                header = header[:-1]
            _check_header(header)
            return header
    finally:
        book.close()
    raise BadInputError("the sheet is empty", code="empty_file")


# --- batch iteration ---------------------------------------------------------------------


def iter_batches(
    path: Path,
    profile: FileProfile,
    *,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    max_field_bytes: int = MAX_FIELD_BYTES,
    sheet: str | None = None,
) -> Iterator[RawBatch]:
    """Yield the file as ``RawBatch``es; raises ``BadInputError`` when it turns out unusable.

    For CSV this is the careful reader; use ``csv_strategies`` to try the fast readers first.
    """
    if profile.format == "parquet":
        return _parquet_batches(path)
    if profile.format == "xlsx":
        return _xlsx_batches(path, profile, sheet)
    if profile.format == "jsonl":
        return _jsonl_batches(path, profile, max_field_bytes)
    return _careful_csv_batches(path, profile, max_field_bytes)


class FastPathUnsuitable(Exception):
    """The fast CSV reader met something only the careful reader handles."""


def csv_strategies(
    path: Path, profile: FileProfile, *, block_bytes: int, max_field_bytes: int
) -> list[tuple[str, Callable[[], Iterator[RawBatch]]]]:
    """Readers to try in order: pyarrow's streaming reader, then the careful reader."""
    return [
        ("arrow", lambda: _arrow_csv_batches(path, profile, block_bytes)),
        ("careful", lambda: _careful_csv_batches(path, profile, max_field_bytes)),
    ]


def _arrow_csv_batches(path: Path, profile: FileProfile, block_bytes: int) -> Iterator[RawBatch]:
    names = [f"c{i}" for i in range(len(profile.header))]
    enc = profile.encoding or "utf-8"
    # pyarrow skips a UTF-8 BOM itself; other encodings are transcoded on the fly.
    arrow_enc = "utf8" if enc in ("utf-8", "utf-8-sig") else enc

    def refuse(_row: Any) -> str:
        return "error"

    read = pacsv.ReadOptions(
        column_names=names, skip_rows=1, block_size=block_bytes, encoding=arrow_enc
    )
    parse = pacsv.ParseOptions(
        delimiter=profile.delimiter or ",",
        # Quoted newlines cost nothing measurable here, and without them a block boundary
        # inside a quoted value could split a record silently.
        newlines_in_values=True,
        invalid_row_handler=refuse,
    )
    convert = pacsv.ConvertOptions(
        column_types={n: pa.string() for n in names}, strings_can_be_null=False
    )
    start = 2
    with _open_binary(path) as raw:
        try:
            reader = pacsv.open_csv(raw, read, parse, convert)
            for batch in reader:
                n = batch.num_rows
                if n == 0:
                    continue
                table = pa.Table.from_batches([batch]).rename_columns(list(profile.header))
                yield RawBatch(table, np.arange(start, start + n, dtype=np.int64))
                start += n
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise _reader_error(exc) from exc
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, UnicodeDecodeError) as exc:
            raise FastPathUnsuitable(str(exc)) from exc
        except StopIteration:
            return


def _reader_error(exc: BaseException) -> BadInputError:
    if isinstance(exc, UnicodeDecodeError):
        return BadInputError(
            f"the file is not valid {exc.encoding} at byte {exc.start}: declare its encoding "
            "in the mapping (read.encoding)",
            code="encoding_error",
        )
    if isinstance(exc, EOFError | zlib.error | gzip.BadGzipFile):
        return BadInputError(
            f"compressed stream is damaged or truncated: {exc}", code="unreadable_compression"
        )
    return BadInputError(f"the file cannot be read as CSV: {exc}", code="unreadable_csv")


def _shorten(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + f"...[{len(text)} chars]"


def _to_table(header: tuple[str, ...], rows: Sequence[Sequence[str | None]]) -> pa.Table:
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in header]
    return pa.table(
        {h: pa.array(col, type=pa.string()) for h, col in zip(header, columns, strict=True)}
    )


def _careful_csv_batches(
    path: Path, profile: FileProfile, max_field_bytes: int
) -> Iterator[RawBatch]:
    width = len(profile.header)
    limit = max(csv.field_size_limit(), max_field_bytes * 64)
    csv.field_size_limit(limit)
    rows: list[list[str]] = []
    numbers: list[int] = []
    rejects: list[RawReject] = []
    row_number = 1
    try:
        with _open_binary(path) as raw:
            text = io.TextIOWrapper(raw, encoding=profile.encoding or "utf-8", newline="")
            reader = csv.reader(text, delimiter=profile.delimiter or ",", strict=False)
            next(reader, None)
            for record in reader:
                if not record:
                    continue
                row_number += 1
                original = (profile.delimiter or ",").join(record)
                if any(len(v) > max_field_bytes for v in record):
                    rejects.append(
                        RawReject(
                            row_number,
                            "field_too_large",
                            f"a field is longer than {max_field_bytes} characters",
                            _shorten(original),
                        )
                    )
                elif len(record) != width:
                    rejects.append(
                        RawReject(
                            row_number,
                            "ragged_row",
                            f"row has {len(record)} fields, header has {width}",
                            _shorten(original),
                        )
                    )
                else:
                    rows.append(record)
                    numbers.append(row_number)
                if len(rows) >= CAREFUL_BATCH_ROWS or len(rejects) >= CAREFUL_BATCH_ROWS:
                    yield RawBatch(
                        _to_table(profile.header, rows), np.array(numbers, np.int64), rejects
                    )
                    rows, numbers, rejects = [], [], []
    except (UnicodeDecodeError, EOFError, zlib.error, gzip.BadGzipFile, csv.Error) as exc:
        raise _reader_error(exc) from exc
    if rows or rejects:
        yield RawBatch(_to_table(profile.header, rows), np.array(numbers, np.int64), rejects)


def _json_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value, sort_keys=True)


def _jsonl_batches(path: Path, profile: FileProfile, max_field_bytes: int) -> Iterator[RawBatch]:
    header = profile.header
    cols: dict[str, list[str | None]] = {h: [] for h in header}
    numbers: list[int] = []
    rejects: list[RawReject] = []

    def flush() -> RawBatch:
        table = pa.table({h: pa.array(v, type=pa.string()) for h, v in cols.items()})
        return RawBatch(table, np.array(numbers, np.int64), list(rejects))

    try:
        with _open_binary(path) as raw:
            text = io.TextIOWrapper(raw, encoding=profile.encoding or "utf-8")
            for line_number, line in enumerate(text, start=1):
                if not line.strip():
                    continue
                if len(line) > max_field_bytes:
                    rejects.append(
                        RawReject(
                            line_number,
                            "field_too_large",
                            f"line is longer than {max_field_bytes} characters",
                            _shorten(line.rstrip()),
                        )
                    )
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    rejects.append(
                        RawReject(
                            line_number, "bad_json", f"invalid JSON: {exc}", _shorten(line.rstrip())
                        )
                    )
                    continue
                if not isinstance(record, dict):
                    rejects.append(
                        RawReject(
                            line_number,
                            "bad_json",
                            "line is not a JSON object",
                            _shorten(line.rstrip()),
                        )
                    )
                    continue
                for h in header:
                    cols[h].append(_json_text(record.get(h)))
                numbers.append(line_number)
                if len(numbers) >= CAREFUL_BATCH_ROWS:
                    yield flush()
                    cols = {h: [] for h in header}
                    numbers, rejects = [], []
    except (UnicodeDecodeError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise _reader_error(exc) from exc
    if numbers or rejects:
        yield flush()


def _parquet_batches(path: Path) -> Iterator[RawBatch]:
    start = 1
    try:
        pf = pq.ParquetFile(path)
        for batch in pf.iter_batches(batch_size=CAREFUL_BATCH_ROWS):
            arrays = []
            for column in batch.columns:
                as_text = column
                if pa.types.is_timestamp(column.type) and _all_midnight(column):
                    as_text = column.cast(pa.date32())
                arrays.append(as_text.cast(pa.string()))
            table = pa.Table.from_arrays(arrays, names=batch.schema.names)
            n = table.num_rows
            yield RawBatch(table, np.arange(start, start + n, dtype=np.int64))
            start += n
    except (pa.ArrowException, OSError) as exc:
        raise BadInputError(f"unreadable Parquet file: {exc}", code="unreadable_parquet") from exc


def _all_midnight(col: pa.Array) -> bool:
    as_date = col.cast(pa.date32()).cast(col.type)
    return bool(pc.all(pc.or_kleene(pc.equal(as_date, col), pc.is_null(col))).as_py())


def _cell_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        if value.time() == dt.time(0):
            return value.date().isoformat()
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _xlsx_batches(path: Path, profile: FileProfile, sheet: str | None) -> Iterator[RawBatch]:
    width = len(profile.header)
    book, ws = _open_sheet(path, sheet)
    rows: list[list[str | None]] = []
    numbers: list[int] = []
    rejects: list[RawReject] = []
    try:
        for row_number, row in enumerate(ws.iter_rows(min_row=2, values_only=True), start=2):
            values = [_cell_text(v) for v in row]
            if all(v is None or v == "" for v in values):
                continue
            extra = [v for v in values[width:] if v not in (None, "")]
            if extra:
                rejects.append(
                    RawReject(
                        row_number,
                        "ragged_row",
                        f"row has values beyond the {width} header columns",
                        _shorten(",".join("" if v is None else v for v in values)),
                    )
                )
                continue
            values = (values + [None] * width)[:width]
            rows.append(values)
            numbers.append(row_number)
            if len(rows) >= CAREFUL_BATCH_ROWS:
                yield RawBatch(
                    _to_table(profile.header, rows),
                    np.array(numbers, np.int64),
                    rejects,
                )
                rows, numbers, rejects = [], [], []
    except BadInputError:
        raise
    except Exception as exc:
        raise BadInputError(f"unreadable Excel workbook: {exc}", code="unreadable_xlsx") from exc
    finally:
        with contextlib.suppress(Exception):
            book.close()
    if rows or rejects:
        yield RawBatch(
            _to_table(profile.header, rows),
            np.array(numbers, np.int64),
            rejects,
        )
