"""Hostile input against the app: every corpus file through the CLI and the blob trigger.

    python -m benchmarks.hostile [--cases a,b] [--paths cli,blob,http] [--tmp DIR]

The corpus is written when it runs (nothing hostile is committed): decompression bombs for each
compressed format the readers accept (gzip, an Excel workbook's zip, Parquet pages and
dictionaries) that would expand to at least 1 GiB, very long lines and fields, very wide headers
(1,000,000 columns in a 10 MB header), deeply nested JSON, oversized Event Grid batches and
events, and odd blob names. Each file runs

* ``cli``   ``python -m conditioning SOURCE FILE --out DIR`` in a process of its own, whose peak
            resident memory the kernel reports when it exits (``wait4``);
* ``blob``  the app's blob trigger on the local Functions host (real Azurite, the real app): the
            file is uploaded to the raw container and the worker scans once; the worker is a
            process of its own whose peak resident memory is reset before each file and read
            after it (``/proc/<pid>/clear_refs``, ``VmHWM``);

and each request (``http``) goes to the same worker. The table gives, per file and path, the
outcome (a quarantine reason, a row-level reject code, or an HTTP status), the wall time and the
worker's peak RSS. Goals: every input refused or quarantined within 30 s on 2 cores, with the
worker's peak RSS at most 600 MB (the budget of a 1 GB legitimate drop); no 5xx, no traceback,
no poisoned blob.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import os
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GOAL_MB = 600.0
GOAL_SECONDS = 30.0
TRIGGER = "on_raw_blob_created"
MIB = 1 << 20
BOMB_BYTES = 1 << 30  # what each decompression bomb expands to

EVENT_HEADER = b"event_date,scope,scope_id,event_type,event_name,value\n"
EVENT_ROW = b"2024-06-01,store,S0001,promotion,hostile,1\n"
JSONL_RECORD = (
    b'{"event_date": "2024-06-01", "scope": "store", "scope_id": "S0001", '
    b'"event_type": "promotion", "event_name": "hostile", "value": 1}\n'
)


# ---------------------------------------------------------------- building bombs


@dataclass(frozen=True)
class _Deflated:
    """A raw deflate stream of ``head + unit * repeat + tail``, built without compressing it all.

    After a full flush the compressor starts afresh, so the compressed form of ``unit`` is the
    same bytes every time and can simply be repeated.
    """

    data: bytes
    crc: int
    size: int

    @classmethod
    def of(cls, head: bytes, unit: bytes, repeat: int, tail: bytes = b"") -> _Deflated:
        c = zlib.compressobj(9, zlib.DEFLATED, -15)
        first = c.compress(head) + c.flush(zlib.Z_FULL_FLUSH)
        middle = c.compress(unit) + c.flush(zlib.Z_FULL_FLUSH)
        last = c.compress(tail) + c.flush(zlib.Z_FINISH)
        crc = zlib.crc32(head)
        for _ in range(repeat):
            crc = zlib.crc32(unit, crc)
        crc = zlib.crc32(tail, crc)
        size = len(head) + len(unit) * repeat + len(tail)
        return cls(first + middle * repeat + last, crc, size)


def _fill(unit: bytes, size: int = MIB) -> bytes:
    """``unit`` repeated to just under ``size`` bytes (whole units only)."""
    return unit * max(1, size // len(unit))


def gzip_bomb(path: Path, head: bytes, unit: bytes, total: int = BOMB_BYTES) -> None:
    """One gzip member whose content is ``head`` and then ``unit`` up to ``total`` bytes."""
    chunk = _fill(unit)
    stream = _Deflated.of(head, chunk, -(-total // len(chunk)))
    header = b"\x1f\x8b\x08\x00" + struct.pack("<I", 0) + b"\x02\xff"
    trailer = struct.pack("<II", stream.crc, stream.size & 0xFFFFFFFF)
    path.write_bytes(header + stream.data + trailer)


def _zip(path: Path, members: list[tuple[str, bytes, int, int]]) -> None:
    """Write a zip of already deflated members: ``(name, deflated, crc, size)``."""
    out = io.BytesIO()
    central = io.BytesIO()
    for name, data, crc, size in members:
        offset = out.tell()
        encoded = name.encode()
        fixed = struct.pack("<HHHHHIII", 20, 0, 8, 0, 0x21, crc, len(data), size)
        out.write(b"PK\x03\x04" + fixed + struct.pack("<HH", len(encoded), 0) + encoded + data)
        central.write(
            b"PK\x01\x02"
            + struct.pack("<H", 20)
            + fixed
            + struct.pack("<HHHHHII", len(encoded), 0, 0, 0, 0, 0, offset)
            + encoded
        )
    start = out.tell()
    directory = central.getvalue()
    end = struct.pack("<HHHHIIH", 0, 0, len(members), len(members), len(directory), start, 0)
    path.write_bytes(out.getvalue() + directory + b"PK\x05\x06" + end)


def _workbook_parts(header: list[str]) -> dict[str, bytes]:
    """The parts of a real one-sheet workbook (openpyxl writes it) with ``header`` in row 1."""
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(header)
    buffer = io.BytesIO()
    book.save(buffer)
    with zipfile.ZipFile(buffer) as archive:
        return {n: archive.read(n) for n in archive.namelist()}


SHEET_OPEN = (
    b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
)
SHEET_CLOSE = b"</sheetData></worksheet>"
DEMOGRAPHICS_HEADER = ["store_id", "population", "median_income"]


def _header_row(names: list[str]) -> bytes:
    cells = "".join(f'<c t="inlineStr"><is><t>{n}</t></is></c>' for n in names)
    return f'<row r="1">{cells}</row>'.encode()


def xlsx_with_sheet(path: Path, sheet: _Deflated, header: list[str], **extra: _Deflated) -> None:
    """A real workbook whose first sheet's XML is ``sheet`` (and further parts ``extra``)."""
    members = []
    for name, data in _workbook_parts(header).items():
        if name == "xl/worksheets/sheet1.xml":
            members.append((name, sheet.data, sheet.crc, sheet.size))
            continue
        d = _Deflated.of(data, b"", 0)
        members.append((name, d.data, d.crc, d.size))
    for name, part in extra.items():
        members.append((name, part.data, part.crc, part.size))
    _zip(path, members)


def xlsx_bomb(path: Path) -> None:
    row = b'<row><c t="inlineStr"><is><t>S0001</t></is></c><c><v>1</v></c><c><v>2</v></c></row>'
    chunk = _fill(row)
    sheet = _Deflated.of(
        SHEET_OPEN + _header_row(DEMOGRAPHICS_HEADER), chunk, BOMB_BYTES // len(chunk), SHEET_CLOSE
    )
    xlsx_with_sheet(path, sheet, DEMOGRAPHICS_HEADER)


def xlsx_lying_sizes(path: Path) -> None:
    """The sheet really expands to 1 GiB, but the zip's directory says it is 4 KiB."""
    row = b"<row><c><v>1</v></c></row>"
    chunk = _fill(row)
    real = _Deflated.of(SHEET_OPEN, chunk, BOMB_BYTES // len(chunk), SHEET_CLOSE)
    xlsx_with_sheet(path, _Deflated(real.data, real.crc, 4096), DEMOGRAPHICS_HEADER)


def xlsx_wide_row(path: Path) -> None:
    """A header row of 1,000,000 cells (about 30 MB of XML; the zip is a few MB)."""
    cells = b"".join(b'<c r="%s1"><v>%d</v></c>' % (_column(i).encode(), i) for i in range(10_000))
    body = SHEET_OPEN + b'<row r="1">' + cells * 100 + b"</row>" + SHEET_CLOSE
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    data = c.compress(body) + c.flush()
    xlsx_with_sheet(path, _Deflated(data, zlib.crc32(body), len(body)), DEMOGRAPHICS_HEADER)


def _column(index: int) -> str:
    name = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        name = chr(65 + rest) + name
    return name


def xlsx_shared_strings_bomb(path: Path) -> None:
    """A small sheet whose shared-string table (read whole by Excel readers) is 1 GiB."""
    head = (
        b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<sst xmlns='
        b'"http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
    )
    strings = _Deflated.of(head, _fill(b"<si><t>aaaaaaaaaaaaaaaa</t></si>"), 1024, b"</sst>")
    sheet = _Deflated.of(SHEET_OPEN + _header_row(DEMOGRAPHICS_HEADER) + SHEET_CLOSE, b"", 0)
    xlsx_with_sheet(path, sheet, DEMOGRAPHICS_HEADER, **{"xl/sharedStrings.xml": strings})


RETURNS_COLUMNS = ("week_start", "store_id", "product_id", "returned_quantity", "return_reason")


def parquet_page_bomb(path: Path) -> None:
    """1,024 distinct values of 1 MiB each in zstd pages: 1 GiB that compresses to kilobytes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = 32
    schema = pa.schema([(c, pa.string()) for c in RETURNS_COLUMNS])
    with pq.ParquetWriter(path, schema, compression="zstd", use_dictionary=False) as writer:
        for group in range(BOMB_BYTES // MIB // rows):
            values = [f"{group * rows + i:08d}" + "x" * (MIB - 8) for i in range(rows)]
            columns = {c: pa.array(["1"] * rows) for c in RETURNS_COLUMNS}
            columns["return_reason"] = pa.array(values)
            writer.write_table(pa.table(columns, schema=schema))


def parquet_dictionary_bomb(path: Path) -> None:
    """One value just under 1 MiB, repeated 200,000 times through a dictionary: 200 GB decoded."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = 200_000
    indices = pa.array(np.zeros(n, np.int32))
    value = pa.DictionaryArray.from_arrays(indices, pa.array(["y" * (MIB - 1)]))
    columns: dict[str, Any] = {c: pa.array(["1"] * n) for c in RETURNS_COLUMNS}
    columns["return_reason"] = value
    pq.write_table(pa.table(columns), path, compression="zstd")


def wide_header(path: Path) -> None:
    """1,000,000 column names in a 10 MB header line."""
    names = b",".join(b"c%08d" % i for i in range(1_000_000))
    path.write_bytes(names + b"\n" + EVENT_ROW)


def many_columns(path: Path) -> None:
    """40,000 distinct names in a 300 KB header: the old duplicate check was quadratic here."""
    names = b",".join([*EVENT_HEADER.strip().split(b","), *(b"x%05d" % i for i in range(40_000))])
    path.write_bytes(names + b"\n")


def long_line(path: Path) -> None:
    """An uncompressed 20 MB line with no delimiter and no newline in it."""
    path.write_bytes(EVENT_HEADER + EVENT_ROW * 10 + b"z" * (20 * MIB) + b"\n" + EVENT_ROW)


def long_fields(path: Path) -> None:
    """Rows with a 2 MB field between ordinary rows: each such row is rejected, nothing else."""
    big = b"2024-06-02,store,S0001,promotion," + b"w" * (2 * MIB) + b",1\n"
    rows = [EVENT_ROW.replace(b"hostile", b"ok%d" % i) for i in range(5)]
    path.write_bytes(EVENT_HEADER + b"".join(r + big for r in rows))


def deep_jsonl(path: Path) -> None:
    """JSON Lines whose first record nests 100,000 arrays deep."""
    path.write_bytes(b'{"event_date": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n")


def deep_json(levels: int = 10_000) -> bytes:
    return b"[" * levels + b"]" * levels


def _event(event_id: str, data: Any) -> dict[str, Any]:
    return {
        "id": event_id,
        "eventType": "Microsoft.MachineLearningServices.RunCompleted",
        "subject": "experiments/x/runs/y",
        "eventTime": "2025-01-01T00:00:00Z",
        "data": data,
        "dataVersion": "2",
    }


# ---------------------------------------------------------------- the corpus


@dataclass(frozen=True)
class FileCase:
    """A file for the conditioning paths; ``expect`` holds the acceptable outcomes."""

    name: str
    source: str
    filename: str
    build: Callable[[Path], None]
    expect: frozenset[str]
    about: str


@dataclass(frozen=True)
class HttpCase:
    """A request to the worker: ``target`` is ``start`` (the ADF start route) or ``eventgrid``."""

    name: str
    target: str
    body: Callable[[], bytes]
    expect: frozenset[str]
    about: str
    content_type: str = "application/json"


def _q(*codes: str) -> frozenset[str]:
    return frozenset(f"quarantined:{c}" for c in codes)


FILES: tuple[FileCase, ...] = (
    FileCase(
        "gzip_huge_field",
        "events",
        "huge-field.csv.gz",
        lambda p: gzip_bomb(p, EVENT_HEADER + b'2024-06-01,store,S1,promotion,"', b"a"),
        _q("record_too_large", "too_large"),
        "1 MB of gzip: one quoted field of 1 GiB",
    ),
    FileCase(
        "gzip_long_line",
        "events",
        "long-line.csv.gz",
        lambda p: gzip_bomb(p, EVENT_HEADER + EVENT_ROW * 100, b"b"),
        _q("record_too_large", "too_large"),
        "100 good rows, then a 1 GiB line",
    ),
    FileCase(
        "gzip_quoted_newlines",
        "events",
        "newlines.csv.gz",
        lambda p: gzip_bomb(p, EVENT_HEADER + b'2024-06-01,store,S1,promotion,"', b"cccccc\n"),
        _q("record_too_large", "too_large"),
        "a quoted value of 1 GiB made of short lines",
    ),
    FileCase(
        "gzip_many_rows",
        "events",
        "rows.csv.gz",
        lambda p: gzip_bomb(p, EVENT_HEADER, EVENT_ROW),
        _q("too_large"),
        "29 million valid rows (1 GiB) from 1 MB of gzip",
    ),
    FileCase(
        "jsonl_gzip_long_line",
        "events",
        "long.jsonl.gz",
        lambda p: gzip_bomb(p, JSONL_RECORD + b'{"event_name": "', b"d"),
        _q("too_large"),
        "JSON Lines: a 1 GiB line from 1 MB of gzip",
    ),
    FileCase(
        "xlsx_bomb",
        "demographics",
        "bomb.xlsx",
        xlsx_bomb,
        _q("too_large"),
        "a workbook whose sheet XML expands to 1 GiB",
    ),
    FileCase(
        "xlsx_shared_strings",
        "demographics",
        "strings.xlsx",
        xlsx_shared_strings_bomb,
        _q("too_large"),
        "a workbook whose shared strings (read whole) expand to 1 GiB",
    ),
    FileCase(
        "xlsx_lying_sizes",
        "demographics",
        "lying.xlsx",
        xlsx_lying_sizes,
        _q("unreadable_xlsx"),
        "a sheet of 1 GiB that the zip directory calls 4 KiB",
    ),
    FileCase(
        "xlsx_wide_row",
        "demographics",
        "wide.xlsx",
        xlsx_wide_row,
        _q("too_many_columns"),
        "a header row of 1,000,000 cells",
    ),
    FileCase(
        "parquet_pages",
        "returns",
        "pages.parquet",
        parquet_page_bomb,
        _q("too_large"),
        "zstd pages of 1 GiB of distinct values",
    ),
    FileCase(
        "parquet_dictionary",
        "returns",
        "dictionary.parquet",
        parquet_dictionary_bomb,
        _q("too_large"),
        "a 1 MiB value repeated 200,000 times through a dictionary",
    ),
    FileCase(
        "wide_header",
        "events",
        "wide.csv",
        wide_header,
        _q("header_too_long"),
        "1,000,000 columns in a 10 MB header",
    ),
    FileCase(
        "many_columns",
        "events",
        "columns.csv",
        many_columns,
        _q("too_many_columns"),
        "40,006 columns in a 300 KB header",
    ),
    FileCase(
        "long_line",
        "events",
        "line.csv",
        long_line,
        _q("record_too_large"),
        "a 20 MB line, uncompressed",
    ),
    FileCase(
        "long_fields",
        "events",
        "fields.csv",
        long_fields,
        frozenset({"conditioned:field_too_large"}),
        "five rows with a 2 MB field among good ones",
    ),
    FileCase(
        "deep_jsonl",
        "events",
        "deep.jsonl",
        deep_jsonl,
        _q("not_tabular"),
        "a JSON Lines record nested 100,000 deep",
    ),
)

REQUESTS: tuple[HttpCase, ...] = (
    HttpCase("start_deep_json", "start", deep_json, frozenset({"400"}), "10,000 levels of JSON"),
    HttpCase(
        "start_not_json",
        "start",
        lambda: b"region=r01",
        frozenset({"415"}),
        "a form body",
        content_type="application/x-www-form-urlencoded",
    ),
    HttpCase(
        "start_too_big",
        "start",
        lambda: json.dumps({"pad": "p" * (2 * MIB)}).encode(),
        frozenset({"413"}),
        "a 2 MB start request",
    ),
    HttpCase(
        "eventgrid_deep_json", "eventgrid", deep_json, frozenset({"400"}), "10,000 levels of JSON"
    ),
    HttpCase(
        "eventgrid_20mb_batch",
        "eventgrid",
        lambda: json.dumps([_event(f"e{i}", {"pad": "p" * 1000}) for i in range(20_000)]).encode(),
        frozenset({"413"}),
        "20,000 events, 20 MB",
    ),
    HttpCase(
        "eventgrid_big_event",
        "eventgrid",
        lambda: json.dumps([_event("big", {"pad": "p" * (MIB + 10)})]).encode(),
        frozenset({"413"}),
        "one event over 1 MB",
    ),
    HttpCase(
        "eventgrid_5001_events",
        "eventgrid",
        lambda: json.dumps([_event(f"n{i}", {}) for i in range(5001)]).encode(),
        frozenset({"413"}),
        "5,001 small events",
    ),
    HttpCase(
        "eventgrid_not_json",
        "eventgrid",
        lambda: b"<xml/>",
        frozenset({"415"}),
        "an XML body",
        content_type="application/xml",
    ),
)

# Blob names no upload should be able to use against the host (all carry a small good file).
ODD_NAMES: tuple[tuple[str, str, frozenset[str]], ...] = (
    ("name_backslashes", "events/hostile/..\\..\\x6.csv", _q("unsafe_name")),
    ("name_1100_chars", "events/hostile/" + "n" * 1100 + ".csv", _q("unsafe_name")),
    ("name_unknown_source", "nosuchsource/hostile/x.csv", _q("unknown_source")),
    ("name_control_char", "events/hostile/\x01ctl.csv", frozenset({"unlisted"})),
)


def write_corpus(target: Path, names: set[str] | None = None) -> list[tuple[FileCase, Path]]:
    """Write the corpus files (those named in ``names``, or all) into ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for case in FILES:
        if names is not None and case.name not in names:
            continue
        path = target / case.filename
        if not path.exists():
            case.build(path)
        written.append((case, path))
    return written


# ---------------------------------------------------------------- measuring


@dataclass
class Measured:
    case: str
    path: str
    outcome: str
    seconds: float
    peak_mb: float | None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def within_memory(self) -> bool:
        return self.peak_mb is not None and self.peak_mb <= GOAL_MB


def vm_hwm_mb(pid: int | str = "self") -> float | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


def _outcome_of_manifest(manifest: dict[str, Any]) -> str:
    if manifest.get("status") == "quarantined":
        return f"quarantined:{manifest['reason']['code']}"
    counts = manifest.get("reject_counts") or {}
    return "conditioned:" + ",".join(sorted(counts)) if counts else "conditioned"


def run_cli(case: FileCase, path: Path, out: Path) -> Measured:
    """``python -m conditioning`` on ``path`` in a fresh process; its peak RSS from ``wait4``.

    A small launcher process starts it: Linux carries the peak of the process that execs a
    program over into the new program's ``ru_maxrss``, so starting it from this (large)
    process would report this process's size.
    """
    out.mkdir(parents=True, exist_ok=True)
    usage = out.parent / f"{out.name}.usage.json"
    command = [sys.executable, "-m", "conditioning", case.source, str(path), "--out", str(out)]
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.hostile", "--measure", str(usage), "--", *command],
        capture_output=True,
        cwd=Path(__file__).resolve().parents[1],
        check=False,
    )
    seconds = time.perf_counter() - started
    measured = json.loads(usage.read_text())
    manifests = sorted(out.glob(f"*/{case.source}/*/manifest.json"))
    outcome = (
        _outcome_of_manifest(json.loads(manifests[-1].read_text()))
        if manifests
        else f"exit {measured['exit']}"
    )
    return Measured(
        case.name,
        "cli",
        outcome,
        seconds,
        measured["maxrss_kb"] / 1024,
        {
            "exit": measured["exit"],
            "stderr": proc.stderr.decode(errors="replace")[-2000:],
            "stdout": proc.stdout.decode(errors="replace")[-2000:],
        },
    )


def _measure(result: Path, command: list[str]) -> int:
    """The launcher: run ``command``, write its exit status and peak RSS (KB) to ``result``."""
    child = subprocess.Popen(command)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    result.write_text(json.dumps({"exit": child.returncode, "maxrss_kb": usage.ru_maxrss}))
    return 0


class HostWorker:
    """The app on the local Functions host in a child process, driven over stdin/stdout.

    Commands: ``reset`` (peak RSS back to the current RSS), ``scan`` (one blob scan of the
    trigger), ``peak`` (peak RSS in MB). The child is the worker: it runs the functions.
    """

    def __init__(self, env: dict[str, str], state: Path) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.hostile", "--serve", str(state)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[1],
        )
        self.log: list[str] = []
        self._log_reader = threading.Thread(target=self._collect, daemon=True)
        self._log_reader.start()
        self.info = self._reply()

    def _collect(self) -> None:
        assert self._proc.stderr is not None
        for line in self._proc.stderr:
            self.log.append(line)

    @property
    def pid(self) -> int:
        return self._proc.pid

    def _reply(self) -> dict[str, Any]:
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError("the host worker stopped:\n" + "".join(self.log[-50:]))
        reply: dict[str, Any] = json.loads(line)
        return reply

    def ask(self, command: str) -> dict[str, Any]:
        assert self._proc.stdin is not None
        self._proc.stdin.write(command + "\n")
        self._proc.stdin.flush()
        return self._reply()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ask("stop")
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def _serve(state: Path) -> None:
    """The child: serve the real app, answer commands until ``stop``."""
    import logging

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    import function_app
    from local.hosting.host import HostConfig, LocalFunctionsHost

    config = HostConfig(
        state_dir=state,
        environ=dict(os.environ),
        host_id=f"hostile-{uuid.uuid4().hex[:8]}",
        # Scans run on command, one file at a time, so each gets its own peak.
        blob_poll_interval=3600.0,
    )
    host = LocalFunctionsHost(function_app.app.get_functions(), config).start()

    def reply(body: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(body) + "\n")
        sys.stdout.flush()

    reply(
        {
            "base_url": host.base_url,
            "function_key": host.keys.default_function_key,
            "eventgrid_key": host.keys.system_keys["eventgrid_extension"],
        }
    )
    try:
        for line in sys.stdin:
            command = line.strip()
            if command == "reset":
                reply({"reset": _reset_peak(), **_stats(host)})
            elif command == "scan":
                started = time.perf_counter()
                host.scan_now(TRIGGER)
                reply({"seconds": time.perf_counter() - started, **_stats(host)})
            elif command == "peak":
                reply({"peak_mb": vm_hwm_mb()})
            elif command == "stop":
                reply({"stopped": True})
                break
    finally:
        host.stop()


def _stats(host: Any) -> dict[str, int]:
    stats = host.blob_stats[TRIGGER]
    return {"failures": stats.failures, "poisoned": stats.poisoned, "completed": stats.completed}


def _reset_peak() -> bool:
    """Reset this process's peak RSS to its current RSS (Linux 4.0+); False where refused."""
    try:
        Path("/proc/self/clear_refs").write_text("5", encoding="ascii")
    except OSError:
        return False
    return True


@dataclass
class BlobTarget:
    """Where the worker's blob trigger reads, and how to read the outcome back."""

    connection: str
    raw: str
    conditioned: str

    def upload(self, name: str, path: Path) -> str:
        """Upload ``path`` as ``name``; its etag."""
        from azure.storage.blob import BlobClient

        client = BlobClient.from_connection_string(self.connection, self.raw, name)
        with path.open("rb") as fh:
            return str(client.upload_blob(fh, overwrite=True)["etag"])

    def outcome(self, source: str, name: str, etag: str) -> str:
        """What the trigger recorded for this blob version, from the dataset registry."""
        from azure.storage.blob import BlobServiceClient

        from adapters.datalake import AzureBlobDataLake
        from adapters.datasets import blob_dataset_ports

        lake = AzureBlobDataLake(BlobServiceClient.from_connection_string(self.connection))
        registry, _ = blob_dataset_ports(lake, self.conditioned)
        # Azurite lists a name with backslashes with slashes instead.
        for candidate in (name, name.replace("\\", "/")):
            entry = registry.find_input(source, candidate, etag)
            if entry is None:
                continue
            seen = "" if entry.input_name == candidate else "unchanged:"
            if entry.status == "quarantined":
                return f"{seen}quarantined:{entry.reason_code}"
            return seen + self._conditioned(lake, entry)
        # A blob quarantined by its name alone may have had no readable etag.
        for entry in registry.versions(source):
            if entry.input_name in (name, name.replace("\\", "/")) and entry.input_etag is None:
                return f"quarantined:{entry.reason_code}"
        return "none"

    def _conditioned(self, lake: Any, entry: Any) -> str:
        manifest = json.loads(lake.read(self.conditioned, entry.manifest.split("/", 1)[1]))
        return _outcome_of_manifest(manifest)


def run_blob(
    worker: HostWorker, target: BlobTarget, source: str, name: str, path: Path
) -> Measured:
    """Upload ``path`` as ``name``, let the worker scan once, read the outcome and the peak."""
    etag = target.upload(name, path)
    before = worker.ask("reset")
    scan = worker.ask("scan")
    peak = worker.ask("peak")["peak_mb"]
    counts = {k: scan[k] - before[k] for k in ("failures", "poisoned", "completed")}
    outcome = target.outcome(source, name, etag)
    if outcome == "none":
        if counts["failures"]:
            outcome = f"failed ({counts['failures']})"
        else:
            outcome = "ignored" if counts["completed"] else "unlisted"
    return Measured(name, "blob", outcome, float(scan["seconds"]), peak, counts)


def run_http(worker: HostWorker, case: HttpCase) -> Measured:
    """Send ``case``'s request to the worker; the outcome is the HTTP status."""
    base = worker.info["base_url"]
    if case.target == "start":
        url = f"{base}/api/orchestrations/train?code={worker.info['function_key']}"
    else:
        url = (
            f"{base}/runtime/webhooks/eventgrid?functionName=on_run_completed"
            f"&code={worker.info['eventgrid_key']}"
        )
    body = case.body()
    worker.ask("reset")
    request = urllib.request.Request(  # noqa: S310 - the local host on loopback
        url, data=body, method="POST", headers={"Content-Type": case.content_type}
    )
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310 - loopback
            status, text = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read()
    seconds = time.perf_counter() - started
    peak = worker.ask("peak")["peak_mb"]
    return Measured(
        case.name, "http", str(status), seconds, peak, {"body": text[:500].decode(errors="replace")}
    )


@contextlib.contextmanager
def local_worker(
    tmp: Path, connection: str | None = None
) -> Iterator[tuple[HostWorker, BlobTarget]]:
    """The app's worker on Azurite (``connection``, or one started here) with fresh containers;
    everything started here is stopped afterwards."""
    from azure.storage.blob import BlobServiceClient

    from local.hosting.azurite import Azurite
    from local.hosting.runtime import isolated_environment

    run = uuid.uuid4().hex[:8]
    with contextlib.ExitStack() as stack:
        if connection is None:
            connection = stack.enter_context(Azurite(location=tmp / "azurite")).connection_string
        containers = {
            "MLOPS_RAW_CONTAINER": f"raw{run}",
            "MLOPS_CONDITIONED_CONTAINER": f"conditioned{run}",
            "MLOPS_QUARANTINE_CONTAINER": f"quarantine{run}",
            "MLOPS_ALERTS_CONTAINER": f"alerts{run}",
        }
        env = {**os.environ, **isolated_environment(tmp / "state", connection), **containers}
        BlobServiceClient.from_connection_string(connection).create_container(
            containers["MLOPS_RAW_CONTAINER"]
        )
        worker = HostWorker(env, tmp / "host")
        stack.callback(worker.close)
        target = BlobTarget(
            connection, containers["MLOPS_RAW_CONTAINER"], containers["MLOPS_CONDITIONED_CONTAINER"]
        )
        # A warm worker, as Azure keeps one: the first drop pays for importing the libraries.
        warm = tmp / "warm-up.csv"
        warm.write_bytes(EVENT_HEADER + EVENT_ROW.replace(b"hostile", run.encode()))
        run_blob(worker, target, "events", f"events/warm-up-{run}/drop.csv", warm)
        yield worker, target


def table(rows: list[Measured]) -> str:
    goals = f"≤ {GOAL_MB:.0f} MB | ≤ {GOAL_SECONDS:.0f} s"
    lines = [
        f"| case | path | outcome | seconds | peak MB | {goals} |",
        "|---|---|---|---:|---:|---|---|",
    ]
    for r in rows:
        peak = f"{r.peak_mb:.0f}" if r.peak_mb is not None else "-"
        memory = "yes" if r.within_memory else "NO"
        fast = "yes" if r.seconds <= GOAL_SECONDS else "NO"
        label = r.case.encode("unicode_escape").decode()[:48]
        lines.append(
            f"| {label} | {r.path} | {r.outcome} | {r.seconds:.1f} | {peak} | {memory} | {fast} |"
        )
    return "\n".join(lines)


def expected(name: str) -> frozenset[str]:
    for case in FILES:
        if case.name == name:
            return case.expect
    for request in REQUESTS:
        if request.name == name:
            return request.expect
    for odd, _, outcomes in ODD_NAMES:
        if odd == name:
            return outcomes
    raise KeyError(name)


def run(
    tmp: Path, cases: set[str] | None, paths: set[str], echo: Callable[[str], None] = print
) -> list[Measured]:
    """Every selected case on every selected path; returns the measurements."""
    from conditioning.service import parse_blob_name

    corpus = write_corpus(tmp / "corpus", cases)
    measured: list[Measured] = []
    if "cli" in paths:
        for case, path in corpus:
            m = run_cli(case, path, tmp / "cli" / case.name)
            echo(f"# cli  {case.name}: {m.outcome} {m.seconds:.1f}s {m.peak_mb:.0f} MB")
            measured.append(m)
    if paths & {"blob", "http"}:
        with local_worker(tmp) as (worker, target):
            if "blob" in paths:
                for case, path in corpus:
                    name = f"{case.source}/hostile/{case.filename}"
                    m = run_blob(worker, target, case.source, name, path)
                    m.case = case.name
                    echo(f"# blob {case.name}: {m.outcome} {m.seconds:.1f}s {m.peak_mb} MB")
                    measured.append(m)
                small = tmp / "corpus" / "small.csv"
                small.write_bytes(EVENT_HEADER + EVENT_ROW)
                for odd, name, _ in ODD_NAMES:
                    if cases is not None and odd not in cases:
                        continue
                    source, _problem = parse_blob_name(name, target.raw)
                    m = run_blob(worker, target, source, name, small)
                    m.case = odd
                    echo(f"# blob {odd}: {m.outcome} {m.seconds:.1f}s")
                    measured.append(m)
            if "http" in paths:
                for request in REQUESTS:
                    if cases is not None and request.name not in cases:
                        continue
                    m = run_http(worker, request)
                    echo(f"# http {request.name}: {m.outcome} {m.seconds:.1f}s")
                    measured.append(m)
    return measured


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.hostile", description=__doc__)
    p.add_argument("--cases", default="", help="comma-separated case names (default: all)")
    p.add_argument("--paths", default="cli,blob,http")
    p.add_argument("--tmp", type=Path, default=None, help="where the corpus and Azurite go")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    p.add_argument("command", nargs="*", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.measure:
        return _measure(args.measure, args.command)
    if args.serve:
        _serve(args.serve)
        return 0
    cases = {c for c in args.cases.split(",") if c} or None
    paths = {x for x in args.paths.split(",") if x}
    with tempfile.TemporaryDirectory(prefix="bench-hostile-", dir=args.tmp) as tmp:
        measured = run(Path(tmp), cases, paths)
    print()
    print(table(measured))
    wrong = [m for m in measured if m.outcome not in expected(m.case)]
    for m in wrong:
        print(f"unexpected: {m.case} via {m.path}: {m.outcome}", file=sys.stderr)
    if args.json:
        rows = [{**dataclasses.asdict(m), "expected": sorted(expected(m.case))} for m in measured]
        result = {"goal_mb": GOAL_MB, "goal_seconds": GOAL_SECONDS, "measured": rows}
        args.json.write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
