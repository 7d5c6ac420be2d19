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

Hostile input stays bounded (``ReadLimits``): what a compressed file expands to is counted as it
is read (gzip streams, the members of an Excel workbook, the decoded values of Parquet pages and
dictionaries) and refused as ``too_large`` past a ratio of the stored size; a header must end
within the sample (``header_too_long``) and have at most ``max_columns`` names
(``too_many_columns``); no reader holds more than one record of ``max_record_bytes`` at a time
(``record_too_large``). Every check is linear in what was read.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import datetime as dt
import gzip
import io
import json
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from xml.parsers import expat

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from adapters.errors import BadInputError

SAMPLE_BYTES = 1 << 20
DEFAULT_BLOCK_BYTES = 512 << 10
DEFAULT_BATCH_BYTES = 2 << 20
MAX_FIELD_BYTES = 1 << 20
CAREFUL_BATCH_ROWS = 50_000
_DELIMITERS = (",", ";", "\t", "|")


@dataclass(frozen=True)
class ReadLimits:
    """Bounds on what one input may cost; past them a file is refused with a reason code.

    * ``max_input_bytes``: the stored file (``too_large``);
    * ``max_expansion`` x the stored size, but at least ``expansion_allowance`` and at most
      ``max_expanded_bytes``: what a compressed file may expand to (``too_large``). Real CSV
      exports compress 3-12x; a decompression bomb, 1,000x;
    * ``max_field_bytes``: one value; a longer one rejects its row (``field_too_large``);
    * ``max_record_bytes``: one record (a line, or a quoted record over several lines); a
      longer one cannot be skipped safely, so the file is refused (``record_too_large``);
    * ``max_columns``: header names, and cells in any row of a workbook (``too_many_columns``),
      Excel's own limit; the header line must end within the first ``SAMPLE_BYTES``
      (``header_too_long``);
    * ``max_part_bytes``: any part of a workbook other than its sheets (shared strings, styles),
      which the Excel reader holds in memory whole (``too_large``).
    """

    max_input_bytes: int = 10 << 30
    max_expansion: int = 100
    expansion_allowance: int = 64 << 20
    max_expanded_bytes: int = 16 << 30
    max_field_bytes: int = MAX_FIELD_BYTES
    max_record_bytes: int = 16 << 20
    max_columns: int = 16_384
    max_part_bytes: int = 32 << 20

    def expanded_limit(self, stored_bytes: int) -> int:
        """How many bytes a file of ``stored_bytes`` may expand to."""
        ratio_bound = max(self.expansion_allowance, stored_bytes * self.max_expansion)
        return min(self.max_expanded_bytes, ratio_bound)

    def too_large(self, what: str, expanded: int, stored_bytes: int) -> BadInputError:
        return BadInputError(
            f"{what} expands to more than {expanded:,} bytes from {stored_bytes:,}: beyond "
            f"{self.max_expansion}x (and {self.expansion_allowance:,} bytes), or "
            f"{self.max_expanded_bytes:,} bytes in all (a decompression bomb?)",
            code="too_large",
        )


DEFAULT_LIMITS = ReadLimits()


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


class _Expanding(io.RawIOBase):
    """A gzip stream that refuses to expand beyond ``limits`` (``too_large``).

    Two checks, as the bytes are read: the total against ``expanded_limit`` of the file, and,
    past the allowance, the ratio so far against ``max_expansion``, so a bomb is refused after
    the allowance rather than after a hundred times its size.
    """

    def __init__(self, path: Path, limits: ReadLimits) -> None:
        self._file = path.open("rb")
        self._inner = gzip.GzipFile(fileobj=self._file, mode="rb")
        stored = path.stat().st_size
        self._stored = stored
        self._limits = limits
        self._limit = limits.expanded_limit(stored)
        self.expanded = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self._inner.read(len(view))
        n = len(data)
        view[:n] = data
        self.expanded += n
        if self.expanded > self._limits.expansion_allowance:
            consumed = max(1, self._file.tell())
            if self.expanded > self._limit or self.expanded > consumed * (
                self._limits.max_expansion
            ):
                raise self._limits.too_large("the compressed stream", self.expanded, consumed)
        return n

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._inner.close()
        self._file.close()
        super().close()


def _open_binary(path: Path, limits: ReadLimits = DEFAULT_LIMITS) -> IO[bytes]:
    """The file's bytes, gunzipped when it is gzip, bounded by ``limits.expanded_limit``."""
    with path.open("rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return io.BufferedReader(_Expanding(path, limits), buffer_size=1 << 20)
    return path.open("rb")


def _read_sample(path: Path, limits: ReadLimits) -> tuple[bytes, str | None]:
    compression = None
    with path.open("rb") as fh:
        head = fh.read(4)
    if head[:2] == b"\x1f\x8b":
        compression = "gzip"
    try:
        with _open_binary(path, limits) as fh:
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


def _allow_long_csv_fields(limits: ReadLimits) -> None:
    # The csv module's limit is process-wide; records are bounded by the readers themselves.
    csv.field_size_limit(max(csv.field_size_limit(), limits.max_record_bytes + 1))


def sniff_delimiter(text: str) -> str:
    """The delimiter that splits the first lines of ``text`` most consistently."""
    lines = text.splitlines()[:50]
    best, best_score = ",", (0.0, 0)
    for delimiter in _DELIMITERS:
        try:
            rows = [r for r in csv.reader(lines, delimiter=delimiter) if r]
        except csv.Error:
            continue
        if not rows or len(rows[0]) < 2:
            continue
        width = len(rows[0])
        consistent = sum(1 for r in rows if len(r) == width) / len(rows)
        score = (consistent, width)
        if score > best_score:
            best, best_score = delimiter, score
    return best


def _complete_lines(text: str, complete: bool) -> str:
    """``text`` without its last line when the sample may have cut that line short."""
    if complete:
        return text
    end = max(text.rfind("\n"), text.rfind("\r"))
    return text[: end + 1] if end >= 0 else ""


def profile_file(
    path: Path,
    *,
    fmt: str = "auto",
    delimiter: str | None = None,
    encoding: str | None = None,
    sheet: str | None = None,
    limits: ReadLimits = DEFAULT_LIMITS,
) -> FileProfile:
    """Find format, compression, encoding, delimiter and header; ``BadInputError`` if unusable."""
    stored = path.stat().st_size
    if stored > limits.max_input_bytes:
        raise BadInputError(
            f"the file is {stored:,} bytes; at most {limits.max_input_bytes:,} are conditioned",
            code="too_large",
        )
    sample, compression = _read_sample(path, limits)
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
        return FileProfile("parquet", compression, None, None, _parquet_header(path, limits))
    if fmt == "xlsx":
        return FileProfile("xlsx", compression, None, None, _xlsx_header(path, sheet, limits))
    if not utf16 and _looks_binary(sample):
        raise BadInputError("the file is binary, not text", code="not_tabular")
    complete = len(sample) < SAMPLE_BYTES
    enc = encoding or detect_encoding(sample, complete)
    try:
        text = sample.decode(enc, errors="strict" if complete else "ignore")
    except (UnicodeDecodeError, LookupError) as exc:
        raise BadInputError(f"the file is not valid {enc}: {exc}", code="encoding_error") from exc
    text = _complete_lines(text.lstrip("\ufeff"), complete)
    if fmt == "jsonl":
        if not complete and not text.strip():
            raise _header_too_long("first JSON line")
        return FileProfile("jsonl", compression, enc, None, _jsonl_header(text, limits))
    if not text.strip():
        if not complete:
            raise _header_too_long("header line")
        raise BadInputError("the file has no header line", code="empty_file")
    _allow_long_csv_fields(limits)
    sep = delimiter or sniff_delimiter(text)
    try:
        first = next(csv.reader(io.StringIO(text), delimiter=sep), [])
    except csv.Error as exc:
        raise BadInputError(
            f"the header line cannot be read: {exc}", code="unreadable_csv"
        ) from exc
    header = tuple(h.strip().lstrip("\ufeff") for h in first)
    _check_header(header, limits)
    return FileProfile("csv", compression, enc, sep, header)


def _header_too_long(what: str) -> BadInputError:
    return BadInputError(
        f"the {what} does not end within the first {SAMPLE_BYTES:,} bytes",
        code="header_too_long",
    )


def _check_width(columns: int, limits: ReadLimits, what: str = "the header") -> None:
    if columns > limits.max_columns:
        raise BadInputError(
            f"{what} has {columns:,} columns; at most {limits.max_columns:,} are read",
            code="too_many_columns",
        )


def _check_header(header: tuple[str, ...], limits: ReadLimits = DEFAULT_LIMITS) -> None:
    if not header or all(not h for h in header):
        raise BadInputError("the header line is empty", code="missing_header")
    _check_width(len(header), limits)
    counts = Counter(h.lower() for h in header)
    dupes = sorted(h for h, n in counts.items() if n > 1)
    if dupes:
        raise BadInputError(f"header names repeat: {dupes}", code="duplicate_columns")


def _jsonl_header(text: str, limits: ReadLimits) -> tuple[str, ...]:
    for line in text.splitlines():
        if line.strip():
            try:
                first = json.loads(line)
            except (json.JSONDecodeError, RecursionError) as exc:
                raise BadInputError(
                    f"first JSON line is not valid JSON: {_json_problem(exc)}", code="not_tabular"
                ) from exc
            if not isinstance(first, dict):
                raise BadInputError("JSON Lines records must be objects", code="not_tabular")
            _check_width(len(first), limits, "the first record")
            return tuple(str(k) for k in first)
    raise BadInputError("the file has no records", code="empty_file")


def _json_problem(exc: Exception) -> str:
    if isinstance(exc, RecursionError):
        return "it nests deeper than the JSON reader follows"
    return str(exc)


# Parquet: the footer is parsed whole; these bound what a forged one may ask for.
_PARQUET_FOOTER_BYTES = 16 << 20
_THRIFT_LIMITS = {"thrift_string_size_limit": 16 << 20, "thrift_container_size_limit": 1 << 20}


def _parquet_file(path: Path, **kwargs: Any) -> Any:
    with path.open("rb") as fh:
        fh.seek(0, io.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - 8))
        tail = fh.read(8)
    footer = int.from_bytes(tail[:4], "little") if len(tail) == 8 else 0
    if footer > _PARQUET_FOOTER_BYTES:
        raise BadInputError(
            f"the Parquet footer is {footer:,} bytes; at most {_PARQUET_FOOTER_BYTES:,} are read",
            code="header_too_long",
        )
    import pyarrow.parquet as pq  # only Parquet drops pay for its import

    return pq.ParquetFile(path, **_THRIFT_LIMITS, **kwargs)


def _parquet_header(path: Path, limits: ReadLimits) -> tuple[str, ...]:
    try:
        pf = _parquet_file(path)
        meta = pf.metadata
        names = tuple(pf.schema_arrow.names)
    except BadInputError:
        raise
    except Exception as exc:
        raise BadInputError(f"unreadable Parquet file: {exc}", code="unreadable_parquet") from exc
    _check_width(len(names), limits)
    stored = path.stat().st_size
    # What the pages expand to, as the footer declares it, and at least one byte per value.
    declared = sum(
        meta.row_group(g).column(c).total_uncompressed_size
        for g in range(meta.num_row_groups)
        for c in range(meta.num_columns)
    )
    expanded = max(declared, meta.num_rows * max(1, len(names)))
    if expanded > limits.expanded_limit(stored):
        raise limits.too_large("the Parquet file", limits.expanded_limit(stored), stored)
    return names


def _open_sheet(path: Path, sheet: str | None) -> Any:
    import openpyxl  # only Excel drops pay for its import (about 0.1 s)

    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
        return book, (book[sheet] if sheet else book.worksheets[0])
    except Exception as exc:
        raise BadInputError(f"unreadable Excel workbook: {exc}", code="unreadable_xlsx") from exc


def _check_workbook(path: Path, limits: ReadLimits) -> None:
    """Refuse a workbook that would cost too much, before the Excel reader opens it.

    Sizes come from the zip's directory; Python's zip reader never yields more than a member
    declares, so a directory that lies gives a damaged workbook, not a bigger one. Then every
    sheet's XML streams past a counter (the Excel reader opens every sheet when it loads a
    workbook, and builds a whole row before handing it over).
    """
    stored = path.stat().st_size
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            total = sum(m.file_size for m in members)
            if len(members) > 10_000 or total > limits.expanded_limit(stored):
                raise limits.too_large(
                    f"the workbook ({len(members):,} parts)", limits.expanded_limit(stored), stored
                )
            for m in members:
                if not _is_sheet(m.filename) and m.file_size > limits.max_part_bytes:
                    raise BadInputError(
                        f"workbook part {m.filename} is {m.file_size:,} bytes once expanded; at "
                        f"most {limits.max_part_bytes:,} are read",
                        code="too_large",
                    )
            for m in members:
                if _is_sheet(m.filename):
                    with archive.open(m) as fh:
                        _scan_sheet(fh, m.filename, limits)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, zlib.error) as exc:
        raise BadInputError(f"unreadable Excel workbook: {exc}", code="unreadable_xlsx") from exc


def _is_sheet(name: str) -> bool:
    return name.startswith("xl/worksheets/") and name.endswith(".xml")


# The Excel reader sizes a sheet from its <dimension> record; without one it reads the sheet to
# its end first, keeping an object per element: at most this many.
_UNDIMENSIONED_ELEMENTS = 2_000_000


class _SheetRefused(Exception):
    pass


def _scan_sheet(fh: IO[bytes], name: str, limits: ReadLimits) -> None:
    """Count a sheet's cells per row and its elements as its XML streams past."""
    cells = elements = 0
    dimension = in_rows = False
    problem: BadInputError | None = None

    def start(tag: str, _attrs: Any) -> None:
        nonlocal cells, elements, dimension, in_rows, problem
        elements += 1
        local = tag.rpartition(":")[2]
        if local == "c":
            cells += 1
            if cells > limits.max_columns:
                problem = BadInputError(
                    f"a row of {name} has more than {limits.max_columns:,} cells",
                    code="too_many_columns",
                )
                raise _SheetRefused
        elif local == "row":
            cells = 0
            in_rows = True
        elif local == "dimension" and not in_rows:
            dimension = True
        if not dimension and elements > _UNDIMENSIONED_ELEMENTS:
            problem = BadInputError(
                f"{name} has no dimension record and more than {_UNDIMENSIONED_ELEMENTS:,} "
                "elements; save it again from a spreadsheet program",
                code="too_large",
            )
            raise _SheetRefused

    parser = expat.ParserCreate()
    parser.StartElementHandler = start
    try:
        parser.ParseFile(fh)
    except _SheetRefused:
        assert problem is not None
        raise problem from None
    except expat.ExpatError as exc:
        raise BadInputError(
            f"unreadable Excel sheet {name}: {exc}", code="unreadable_xlsx"
        ) from exc


def _open_checked_sheet(path: Path, sheet: str | None, limits: ReadLimits) -> Any:
    _check_workbook(path, limits)
    return _open_sheet(path, sheet)


def _xlsx_header(path: Path, sheet: str | None, limits: ReadLimits) -> tuple[str, ...]:
    book, ws = _open_checked_sheet(path, sheet, limits)
    try:
        for row in ws.iter_rows(max_row=1, values_only=True):
            header = tuple("" if v is None else str(v).strip() for v in row)
            while header and not header[-1]:
                header = header[:-1]
            _check_header(header, limits)
            return header
    finally:
        book.close()
    raise BadInputError("the sheet is empty", code="empty_file")


# --- batch iteration ---------------------------------------------------------------------


def iter_batches(
    path: Path,
    profile: FileProfile,
    *,
    sheet: str | None = None,
    limits: ReadLimits = DEFAULT_LIMITS,
) -> Iterator[RawBatch]:
    """Yield the file as ``RawBatch``es; raises ``BadInputError`` when it turns out unusable.

    For CSV this is the careful reader; use ``csv_strategies`` to try the fast readers first.
    """
    if profile.format == "parquet":
        return _parquet_batches(path, limits)
    if profile.format == "xlsx":
        return _xlsx_batches(path, profile, sheet, limits)
    if profile.format == "jsonl":
        return _jsonl_batches(path, profile, limits)
    return _careful_csv_batches(path, profile, limits)


class FastPathUnsuitable(Exception):
    """The fast CSV reader met something only the careful reader handles."""


def csv_strategies(
    path: Path,
    profile: FileProfile,
    *,
    block_bytes: int,
    limits: ReadLimits = DEFAULT_LIMITS,
    batch_bytes: int = DEFAULT_BATCH_BYTES,
) -> list[tuple[str, Callable[[], Iterator[RawBatch]]]]:
    """Readers to try in order: pyarrow's streaming reader, then the careful reader.

    The fast reader parses blocks of ``block_bytes`` (pyarrow reads a few dozen ahead, so this
    bounds its memory) and hands them on joined into batches of about ``batch_bytes`` (fewer,
    larger batches cost less per row downstream). A record longer than a block makes it give
    up, and the careful reader takes over with its own bounds.
    """
    return [
        ("arrow", lambda: _arrow_csv_batches(path, profile, block_bytes, limits, batch_bytes)),
        ("careful", lambda: _careful_csv_batches(path, profile, limits)),
    ]


def _arrow_csv_batches(
    path: Path,
    profile: FileProfile,
    block_bytes: int,
    limits: ReadLimits,
    batch_bytes: int = DEFAULT_BATCH_BYTES,
) -> Iterator[RawBatch]:
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
    held: list[pa.RecordBatch] = []
    held_bytes = 0

    def joined() -> RawBatch:
        nonlocal start, held, held_bytes
        table = pa.Table.from_batches(held).rename_columns(list(profile.header))
        n = table.num_rows
        out = RawBatch(table, np.arange(start, start + n, dtype=np.int64))
        start += n
        held, held_bytes = [], 0
        return out

    with _open_binary(path, limits) as raw:
        try:
            reader = pacsv.open_csv(raw, read, parse, convert)
            for batch in reader:
                if batch.num_rows == 0:
                    continue
                held.append(batch)
                held_bytes += batch.nbytes
                if held_bytes >= batch_bytes:
                    yield joined()
            if held:
                yield joined()
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


class _RecordLines:
    """The physical lines of ``text`` for ``csv.reader``, none beyond ``limit`` characters.

    ``pending`` counts the characters handed out since the consumer last reset it (after each
    record), so a quoted record spread over many short lines is bounded too.
    """

    def __init__(self, text: IO[str], limit: int) -> None:
        self._text = text
        self._limit = limit
        self.pending = 0

    def __iter__(self) -> _RecordLines:
        return self

    def __next__(self) -> str:
        line = self._text.readline(self._limit + 1)
        if not line:
            raise StopIteration
        self.pending += len(line)
        if self.pending > self._limit:
            raise BadInputError(
                f"a record is longer than {self._limit:,} characters; the file cannot be split "
                "into rows safely",
                code="record_too_large",
            )
        return line


def _careful_csv_batches(
    path: Path, profile: FileProfile, limits: ReadLimits
) -> Iterator[RawBatch]:
    width = len(profile.header)
    max_field_bytes = limits.max_field_bytes
    _allow_long_csv_fields(limits)
    rows: list[list[str]] = []
    numbers: list[int] = []
    rejects: list[RawReject] = []
    row_number = 1
    try:
        with _open_binary(path, limits) as raw:
            text = io.TextIOWrapper(raw, encoding=profile.encoding or "utf-8", newline="")
            lines = _RecordLines(text, limits.max_record_bytes)
            reader = csv.reader(lines, delimiter=profile.delimiter or ",", strict=False)
            next(reader, None)
            lines.pending = 0
            for record in reader:
                lines.pending = 0
                if not record:
                    continue
                row_number += 1
                if any(len(v) > max_field_bytes for v in record):
                    rejects.append(
                        RawReject(
                            row_number,
                            "field_too_large",
                            f"a field is longer than {max_field_bytes} characters",
                            _shorten((profile.delimiter or ",").join(record)),
                        )
                    )
                elif len(record) != width:
                    rejects.append(
                        RawReject(
                            row_number,
                            "ragged_row",
                            f"row has {len(record)} fields, header has {width}",
                            _shorten((profile.delimiter or ",").join(record)),
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


def _bounded_lines(text: IO[str], limit: int) -> Iterator[tuple[str, int]]:
    """``(line, length)`` for each line; a line beyond ``limit`` characters is cut to its first
    ``limit`` and the rest skipped in bounded reads (``length`` is its full length)."""
    while line := text.readline(limit + 1):
        length = len(line)
        if length > limit and not line.endswith("\n"):
            while rest := text.readline(limit):
                length += len(rest)
                if rest.endswith("\n"):
                    break
            line = line[:limit]
        yield line, length


def _jsonl_batches(path: Path, profile: FileProfile, limits: ReadLimits) -> Iterator[RawBatch]:
    header = profile.header
    max_field_bytes = limits.max_field_bytes
    cols: dict[str, list[str | None]] = {h: [] for h in header}
    numbers: list[int] = []
    rejects: list[RawReject] = []

    def flush() -> RawBatch:
        table = pa.table({h: pa.array(v, type=pa.string()) for h, v in cols.items()})
        return RawBatch(table, np.array(numbers, np.int64), list(rejects))

    try:
        with _open_binary(path, limits) as raw:
            text = io.TextIOWrapper(raw, encoding=profile.encoding or "utf-8")
            lines = _bounded_lines(text, max_field_bytes)
            for line_number, (line, length) in enumerate(lines, start=1):
                if not line.strip():
                    continue
                if length > max_field_bytes:
                    rejects.append(
                        RawReject(
                            line_number,
                            "field_too_large",
                            f"line is longer than {max_field_bytes} characters",
                            _shorten(line.rstrip()) + f"...[{length} chars]",
                        )
                    )
                    continue
                try:
                    record = json.loads(line)
                except (json.JSONDecodeError, RecursionError) as exc:
                    rejects.append(
                        RawReject(
                            line_number,
                            "bad_json",
                            f"invalid JSON: {_json_problem(exc)}",
                            _shorten(line.rstrip()),
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


# Decoded Parquet values are handed on in slices of about this many bytes.
_PARQUET_SLICE_BYTES = 64 << 20


def _is_text(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
    )


def _text_columns(schema: pa.Schema) -> list[str]:
    return [
        f.name
        for f in schema
        if _is_text(f.type) or (pa.types.is_dictionary(f.type) and _is_text(f.type.value_type))
    ]


def _cell_bytes(column: pa.Array) -> np.ndarray[Any, Any]:
    """Bytes each value will take once decoded as text, without decoding it."""
    if pa.types.is_dictionary(column.type):
        lengths = _cell_bytes(column.dictionary)
        indices = column.indices.fill_null(0).to_numpy(zero_copy_only=False)
        per_row = lengths[indices] if len(lengths) else np.zeros(len(column), np.int64)
        nulls = column.is_null().to_numpy(zero_copy_only=False)
        return np.asarray(np.where(nulls, 0, per_row), dtype=np.int64)
    if _is_text(column.type):
        lengths = pc.binary_length(column).fill_null(0).to_numpy(zero_copy_only=False)
        return np.asarray(lengths, dtype=np.int64)
    return np.full(len(column), 8, np.int64)


def _parquet_batches(path: Path, limits: ReadLimits) -> Iterator[RawBatch]:
    """Parquet in batches whose decoded size is known before anything is decoded.

    Text columns are read dictionary-encoded, so a value repeated a million times (a dictionary
    bomb) costs one copy; each value's decoded length is summed before the batch is decoded,
    counted against the expansion limit, and rows with a value over ``max_field_bytes`` are
    rejected without decoding it.
    """
    stored = path.stat().st_size
    budget = limits.expanded_limit(stored)
    expanded = 0
    start = 1
    try:
        probe = _parquet_file(path)
        pf = _parquet_file(path, read_dictionary=_text_columns(probe.schema_arrow))
        for read in pf.iter_batches(batch_size=CAREFUL_BATCH_ROWS):
            batch = read
            n = batch.num_rows
            sizes = [_cell_bytes(c) for c in batch.columns]
            row_bytes = np.sum(sizes, axis=0) + batch.num_columns if sizes else np.zeros(n)
            expanded += int(row_bytes.sum())
            if expanded > budget:
                raise limits.too_large("the Parquet data", budget, stored)
            numbers = np.arange(start, start + n, dtype=np.int64)
            start += n
            oversized = np.zeros(n, bool)
            for s in sizes:
                oversized |= s > limits.max_field_bytes
            rejects = _parquet_oversized(batch, numbers, oversized, limits)
            keep = np.flatnonzero(~oversized)
            if len(keep) < n:
                batch = batch.take(pa.array(keep))
                row_bytes, numbers = row_bytes[keep], numbers[keep]
            for lo, hi in _slices(row_bytes, _PARQUET_SLICE_BYTES):
                table = _parquet_text(batch.slice(lo, hi - lo))
                yield RawBatch(table, numbers[lo:hi], rejects)
                rejects = []
            if rejects:
                yield RawBatch(_parquet_text(batch.slice(0, 0)), numbers[:0], rejects)
    except (pa.ArrowException, OSError) as exc:
        raise BadInputError(f"unreadable Parquet file: {exc}", code="unreadable_parquet") from exc


def _slices(row_bytes: np.ndarray[Any, Any], target: int) -> Iterator[tuple[int, int]]:
    """``[lo, hi)`` ranges of rows of about ``target`` bytes each (at least one row)."""
    n = len(row_bytes)
    if n == 0:
        return
    if int(row_bytes.sum()) <= target:
        yield 0, n
        return
    ends = np.cumsum(row_bytes)
    lo = 0
    while lo < n:
        base = ends[lo - 1] if lo else 0
        hi = int(np.searchsorted(ends, base + target, side="right"))
        hi = max(hi, lo + 1)
        yield lo, hi
        lo = hi


def _parquet_text(batch: pa.RecordBatch) -> pa.Table:
    arrays = []
    for column in batch.columns:
        as_text = column
        if pa.types.is_dictionary(column.type):
            as_text = column.dictionary_decode()
        if pa.types.is_timestamp(as_text.type) and _all_midnight(as_text):
            as_text = as_text.cast(pa.date32())
        arrays.append(as_text.cast(pa.string()))
    return pa.Table.from_arrays(arrays, names=batch.schema.names)


def _parquet_oversized(
    batch: pa.RecordBatch,
    numbers: np.ndarray[Any, Any],
    oversized: np.ndarray[Any, Any],
    limits: ReadLimits,
) -> list[RawReject]:
    rejects = []
    for i in np.flatnonzero(oversized).tolist():
        cells = []
        for column in batch.columns:
            value = column[i]
            if pa.types.is_dictionary(column.type):
                value = value.value if value.is_valid else None
            if value is None or not value.is_valid:
                cells.append("")
                continue
            if pa.types.is_string(value.type) or pa.types.is_large_string(value.type):
                head = pc.utf8_slice_codeunits(pa.array([value], value.type), 0, 300)[0].as_py()
            elif pa.types.is_binary(value.type) or pa.types.is_large_binary(value.type):
                head = repr(pc.binary_slice(pa.array([value], value.type), 0, 300)[0].as_py())
            else:
                head = str(value.as_py())
            cells.append(_shorten(head))
        rejects.append(
            RawReject(
                int(numbers[i]),
                "field_too_large",
                f"a value is longer than {limits.max_field_bytes} bytes",
                ",".join(cells),
            )
        )
    return rejects


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


def _xlsx_batches(
    path: Path, profile: FileProfile, sheet: str | None, limits: ReadLimits
) -> Iterator[RawBatch]:
    width = len(profile.header)
    book, ws = _open_checked_sheet(path, sheet, limits)
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
