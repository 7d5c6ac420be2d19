"""Duplicate keys across a whole file, in flat memory.

Each accepted record's key is hashed to 64 bits (vectorised over Arrow buffers) and spilled to
one of several partition files on local disk, with its row number and its place in the output.
After the file is read, each partition is loaded alone and sorted, so memory is bounded by one
partition whatever the file size. The first occurrence of a key wins; later ones are rejected.
Keys are not adversarial, so a 64-bit hash's collision odds (~1e-7 at 10^6 keys... 10^-5 at
10^7) are acceptable for vendor data.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_SPILL_DTYPE = [("key", "<u8"), ("row", "<i8"), ("part", "<i4"), ("pos", "<i4")]
_SPACES = int.from_bytes(b" " * 8, "little")
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB


def _mix(x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """splitmix64's finaliser: spreads every input bit over the whole word."""

    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint64(30))
        x = x * np.uint64(_M1)
        x = x ^ (x >> np.uint64(27))
        x = x * np.uint64(_M2)
        mixed: np.ndarray[Any, Any] = x ^ (x >> np.uint64(31))
        return mixed


def _text_hash(values: pa.Array) -> np.ndarray[Any, Any]:
    values = pc.fill_null(values, "")
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    longest = pc.max(pc.binary_length(values)).as_py() or 0
    width = max(8, -(-int(longest) // 8) * 8)
    # Pad with spaces to a multiple of 8 bytes so the text buffer becomes an (n, words) matrix.
    # Trimmed values never end in a space, and an all-space word contributes nothing, so the
    # hash of a value does not depend on the batch's padding width.
    padded = pc.utf8_rpad(values, width=width, padding=" ").cast(pa.large_binary())
    n = len(padded)
    data = np.frombuffer(padded.buffers()[2], dtype=np.uint8)
    offsets = np.frombuffer(padded.buffers()[1], dtype=np.int64)[padded.offset : padded.offset + 1]
    start = int(offsets[0])
    words = data[start : start + n * width].view("<u8").reshape(n, width // 8)
    h = np.zeros(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for i in range(width // 8):
            w = words[:, i] ^ np.uint64(_SPACES)
            salt = np.uint64((0x9E3779B97F4A7C15 * (i + 1)) & 0xFFFFFFFFFFFFFFFF)
            h ^= np.where(w == 0, np.uint64(0), _mix(w + salt))
    return h


def _column_hash(col: pa.Array) -> np.ndarray[Any, Any]:
    """A 64-bit hash of each value of one key column (the same value, the same hash)."""
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        # Keys repeat a lot (stores, products): hash each distinct value once.
        encoded = pc.dictionary_encode(col, null_encoding="encode")
        if len(encoded.dictionary) * 4 < len(col):
            index = np.asarray(encoded.indices.to_numpy(zero_copy_only=False))
            hashed: np.ndarray[Any, Any] = _text_hash(encoded.dictionary)[index]
            return hashed
        return _text_hash(col)
    if pa.types.is_date32(col.type):
        col = col.cast(pa.int32())
    as_int = pc.fill_null(col.cast(pa.int64()), -(2**62))
    return _mix(np.asarray(as_int.to_numpy(zero_copy_only=False)).view(np.uint64))


def key_hashes(
    table: pa.Table,
    key: tuple[str, ...],
    encodings: Mapping[str, tuple[pa.Array, np.ndarray[Any, Any]]] | None = None,
) -> np.ndarray[Any, Any]:
    """A 64-bit hash per row of the ``key`` columns (same key, same hash, across batches).

    ``encodings`` may give a key column as (distinct values, each row's index into them), as
    normalisation already has it; those columns are hashed once per distinct value.
    """

    h = np.full(table.num_rows, 0x243F6A8885A308D3, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j, name in enumerate(key):
            encoded = encodings.get(name) if encodings else None
            if encoded is not None:
                values, index = encoded
                part = _column_hash(values)[index]
            else:
                part = _column_hash(table.column(name).combine_chunks())
            h = _mix(h * np.uint64(31 + 2 * j) + part)
    return h


@dataclass(frozen=True)
class Spill:
    """One batch's keys ready to spill: records ordered by partition, positions counted from
    the batch's first record, and where each partition's records start and end."""

    records: np.ndarray[Any, Any]
    bounds: np.ndarray[Any, Any]


@dataclass(frozen=True)
class Duplicate:
    row: int
    first_row: int
    part: int
    pos: int


class DuplicateFinder:
    """Spill (key hash, row, part, position) to partition files; then list later occurrences."""

    def __init__(self, directory: Path, partitions: int) -> None:
        self._dir = directory
        self._dir.mkdir(parents=True, exist_ok=True)
        self._partitions = max(1, partitions)
        self._files = [
            (directory / f"keys-{i:04d}.bin").open("ab") for i in range(self._partitions)
        ]

    @staticmethod
    def spill(hashes: np.ndarray[Any, Any], rows: np.ndarray[Any, Any], partitions: int) -> Spill:
        """Sort one batch's keys into ``partitions`` (pure: batches may do this on any thread;
        ``add`` then writes them in file order)."""
        partitions = max(1, partitions)
        which = ((hashes >> np.uint64(40)) % np.uint64(partitions)).astype(np.uint16)
        order = np.argsort(which, kind="stable")
        # Filled field by field in partition order: gathering whole records is several times
        # slower than gathering each field.
        records = np.empty(len(hashes), dtype=_SPILL_DTYPE)
        records["key"] = hashes[order]
        records["row"] = rows[order]
        records["part"] = 0
        records["pos"] = order
        bounds = np.concatenate(([0], np.cumsum(np.bincount(which, minlength=partitions))))
        return Spill(records, bounds)

    def add(self, spill: Spill, part: int, first_pos: int) -> None:
        """Write one batch's spilled keys: its records are in ``part`` from ``first_pos`` on.
        A spill is added once (its positions are shifted in place)."""
        if len(spill.bounds) != self._partitions + 1:
            raise ValueError(
                f"keys spilled into {len(spill.bounds) - 1} partitions, not {self._partitions}"
            )
        records = spill.records
        records["part"] = part
        records["pos"] += first_pos
        for i in range(self._partitions):
            lo, hi = int(spill.bounds[i]), int(spill.bounds[i + 1])
            if hi > lo:
                self._files[i].write(records[lo:hi].data)

    def duplicates(self) -> list[Duplicate]:
        """Every record whose key appeared earlier in the file (sorted by row).

        Partitions are independent; two are sorted at a time (numpy releases the GIL while
        sorting), which bounds memory by two partitions.
        """

        for f in self._files:
            f.close()
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="dedupe") as pool:
            found = [d for part in pool.map(self._partition, range(self._partitions)) for d in part]
        found.sort(key=lambda d: (d.row, d.part, d.pos))
        return found

    def _partition(self, i: int) -> list[Duplicate]:
        path = self._dir / f"keys-{i:04d}.bin"
        records = np.fromfile(path, dtype=_SPILL_DTYPE)
        path.unlink()
        if len(records) < 2:
            return []
        # A plain sort of the keys is cheap; the stable arg-sort only runs when a key repeats.
        keys = np.sort(records["key"])
        if not (keys[1:] == keys[:-1]).any():
            return []
        # Records were spilled in file order, so a stable sort on the key alone keeps the
        # first occurrence of every key first.
        order = np.argsort(records["key"], kind="stable")
        records = records[order]
        same = records["key"][1:] == records["key"][:-1]
        # Index of the first record of each run of equal keys.
        starts = np.concatenate(([True], ~same))
        run_first = np.maximum.accumulate(np.where(starts, np.arange(len(records)), 0))
        found = []
        for j in np.flatnonzero(np.concatenate(([False], same))).tolist():
            r = records[j]
            first = records[run_first[j]]
            found.append(Duplicate(int(r["row"]), int(first["row"]), int(r["part"]), int(r["pos"])))
        return found
