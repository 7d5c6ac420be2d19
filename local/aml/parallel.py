"""Running a ``type: parallel`` step locally: mini-batches over worker processes.

``ParallelRun`` splits the step's ``input_data`` the way Azure ML does — by
``partition_keys`` for an ``mltable`` table (one mini-batch per partition, handed over as a
pandas DataFrame), by ``mini_batch_size`` files for a folder or a file-list MLTable, or by
approximate size for a table without partition keys — and feeds the mini-batches to
``max_concurrency_per_instance`` worker processes (``parallel_worker.py``), each of which
calls the entry script's ``init()`` once and ``run()`` per mini-batch.

Failure handling follows Azure ML's settings:
- a mini-batch whose ``run()`` raises or exceeds ``retry_settings.timeout`` seconds (its
  worker is then killed and replaced) is tried again, up to ``retry_settings.max_retries``
  tries in all; one of files or table rows whose ``run()`` returns fewer results than it had
  items has failed (those items count against ``error_threshold``);
- the step fails once more mini-batches failed for good than ``mini_batch_error_threshold``
  allows (``-1``: any number), or more items than ``error_threshold``;
- an ``init()`` that raises fails the step at once.

``run()``'s results go, in mini-batch order, to the ``append_row_to`` output (a DataFrame as
space-separated rows, other values one per line); every finished mini-batch is a line of
``logs/mini_batches.jsonl``; ``progress()`` gives the counts the executor puts in the record.

It runs in a thread of the executor and looks like a process to the run loop (``poll``,
``stop``); workers are process groups of their own, stopped with the step.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from adapters.errors import BadInputError
from local.aml import mltable
from local.aml.bindings import render_arguments
from local.aml.spec import DEFAULT_FILES_PER_BATCH, DEFAULT_TABULAR_BATCH_BYTES, StepSpec

WORKER = Path(__file__).resolve().parent / "parallel_worker.py"
APPEND_FILE = "parallel_run_step.txt"  # Azure ML's file name when append_row_to is a folder
ARROW_PAYLOAD = "__arrow_ipc__"  # the key parallel_worker.py looks for
ERROR_TAIL = 1500


@dataclass
class MiniBatch:
    index: int
    payload: Any  # a DataFrame, or a list of file paths
    items: int
    partition: dict[str, Any] | None = None
    attempts: int = 0
    errors: list[str] = field(default_factory=list)  # every failed try's, oldest first
    failed: bool = False  # the last try failed: it will not run again

    def describe(self) -> dict[str, Any]:
        if self.partition is not None:
            return {"partition": self.partition}
        return {"items": self.items}


def _portable(payload: Any) -> Any:
    """A mini-batch as the worker can read it whatever its pandas version: a table travels as
    Arrow IPC bytes (the worker rebuilds a DataFrame with its own pandas), a file list as is."""
    if hasattr(payload, "to_parquet") and hasattr(payload, "columns"):
        import pyarrow as pa

        table = pa.Table.from_pandas(payload, preserve_index=False)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return {ARROW_PAYLOAD: sink.getvalue().to_pybytes()}
    return payload


def _scalar(value: Any) -> Any:
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def _files_of(path: Path) -> list[str]:
    if path.is_file():
        return [str(path)]
    return [str(p) for p in sorted(path.rglob("*")) if p.is_file()]


class MiniBatches:
    """A step's mini-batches in their stable order, each made when it is taken: the driver holds
    only the mini-batches that are running or waiting for another try, never the whole input
    split up at once (Azure ML's runner, too, reads each mini-batch as it hands it out).

    ``len()`` is the count so far: a partition whose files turn out to hold no rows is dropped
    when it is reached, as a table split by key has no mini-batch for a key without rows."""

    def __init__(self, count: int, tabular: bool, make: Iterator[MiniBatch | None]) -> None:
        self._count = count
        self.tabular = tabular  # mini-batches are DataFrames, not file lists
        self._make = make

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[MiniBatch]:
        while (batch := self.take()) is not None:
            yield batch

    def take(self) -> MiniBatch | None:
        """The next mini-batch, made now; ``None`` when there are no more."""
        for batch in self._make:
            if batch is not None:
                return batch
            self._count -= 1
        return None


def mini_batches(
    kind: str, path: Path, size: int | None, partition_keys: tuple[str, ...], step: str
) -> MiniBatches:
    """The mini-batches of input ``path`` (of input type ``kind``), in a stable order."""
    table = mltable.read(path) if kind == "mltable" else None
    if partition_keys:
        if table is None or not table.is_tabular:
            raise BadInputError(
                f"step {step!r}: partition_keys need an mltable input with tabular data "
                f"(input_data is {kind})",
                code="invalid_pipeline",
            )
        if set(partition_keys) <= mltable.file_constant_columns(table):
            return _partitions_by_file(table, partition_keys)
        return _partitions_by_row(table, partition_keys, step)
    if table is not None and table.is_tabular:
        frame = mltable.to_frame(table)
        budget = size or DEFAULT_TABULAR_BATCH_BYTES
        row_bytes = max(1, table.total_bytes() // max(1, len(frame)))
        rows = max(1, budget // row_bytes)
        starts = range(0, len(frame), rows)
        chunks = (
            MiniBatch(index, chunk, len(chunk))
            for index, start in enumerate(starts)
            for chunk in [frame.iloc[start : start + rows].reset_index(drop=True)]
        )
        return MiniBatches(len(starts), True, chunks)
    files = [str(f) for f in table.files] if table is not None else _files_of(path)
    count = size or DEFAULT_FILES_PER_BATCH
    starts = range(0, len(files), count)
    lists = (files[start : start + count] for start in starts)
    return MiniBatches(
        len(starts), False, (MiniBatch(i, chunk, len(chunk)) for i, chunk in enumerate(lists))
    )


def _partitions_by_file(table: mltable.MLTable, keys: tuple[str, ...]) -> MiniBatches:
    """Keys that the files' paths give (``extract_columns_from_partition_format``): each
    partition is read from its own files when it is taken."""
    groups: dict[tuple[str, ...], list[Path]] = {}
    for file in table.files:
        values = mltable.path_columns(table, file)
        groups.setdefault(tuple(values[k] for k in keys), []).append(file)

    def make() -> Iterator[MiniBatch | None]:
        index = 0
        for key in sorted(groups):
            frame = mltable.to_frame(table, groups.pop(key))
            if frame.empty:
                yield None
                continue
            yield MiniBatch(index, frame, len(frame), dict(zip(keys, key, strict=True)))
            index += 1

    return MiniBatches(len(groups), True, make())


def _partitions_by_row(table: mltable.MLTable, keys: tuple[str, ...], step: str) -> MiniBatches:
    """Keys among the table's columns: the table is read once and each partition's rows are
    taken from it when the partition is."""
    import numpy as np

    frame = mltable.to_frame(table)
    missing = [k for k in keys if k not in frame.columns]
    if missing:
        raise BadInputError(
            f"step {step!r}: partition key(s) {', '.join(missing)} are not columns of the "
            f"table (columns: {', '.join(map(str, frame.columns))})",
            code="invalid_pipeline",
        )
    codes = frame.groupby(list(keys), sort=True, dropna=False).ngroup().to_numpy()
    order = np.argsort(codes, kind="stable")
    count = int(codes.max()) + 1 if len(codes) else 0
    bounds = np.searchsorted(codes[order], np.arange(count + 1))

    def make() -> Iterator[MiniBatch | None]:
        for index in range(count):
            rows = frame.take(order[bounds[index] : bounds[index + 1]]).reset_index(drop=True)
            partition = {k: _scalar(rows[k].iloc[0]) for k in keys}
            yield MiniBatch(index, rows, len(rows), partition)

    return MiniBatches(count, True, make())


class _Worker:
    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str], log: IO[bytes]) -> None:
        task_read, self.task_fd = os.pipe()
        self.result_fd, result_write = os.pipe()
        # python, worker script, entry script, then the two pipes, then program arguments.
        argv = [*argv[:3], str(task_read), str(result_write), *argv[3:]]
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=(task_read, result_write),
            start_new_session=True,
        )
        os.close(task_read)
        os.close(result_write)
        self.ready = False
        self.batch: MiniBatch | None = None
        self.started = 0.0

    def send(self, message: Any) -> None:
        from local.aml.parallel_worker import send

        send(self.task_fd, message)

    def receive(self) -> Any:
        from local.aml.parallel_worker import receive

        return receive(self.result_fd)

    def stop(self, grace: float = 2.0) -> None:
        with contextlib.suppress(OSError):
            os.close(self.task_fd)
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout=5)
        with contextlib.suppress(OSError):
            os.close(self.result_fd)

    def finish(self, timeout: float) -> None:
        """Ask for a clean exit (``shutdown()`` runs), then stop whatever is left."""
        with contextlib.suppress(OSError):
            os.close(self.task_fd)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=timeout)
        self.stop()


class ParallelRun(threading.Thread):
    """One parallel step, driven from a thread; ``poll()`` is None until it ended (0 or 1)."""

    def __init__(
        self,
        spec: StepSpec,
        values: Mapping[str, Any],
        outputs: Mapping[str, Path],
        *,
        snapshot: Path,
        logs: Path,
        log_path: Path,
        env: dict[str, str],
        python: Path | None = None,
    ) -> None:
        super().__init__(name=f"parallel-{spec.name}", daemon=True)
        assert spec.parallel is not None
        self.spec = spec
        self.settings = spec.parallel
        self.values = dict(values)
        self.outputs = dict(outputs)
        self.snapshot = snapshot
        self.logs = logs
        self.log_path = log_path
        self.env = env
        # The step environment's interpreter: workers run the entry script in it.
        self.python = str(python or sys.executable)
        self.returncode: int | None = None
        self.error = ""
        self.counts: dict[str, int] = {
            "total": 0, "succeeded": 0, "failed": 0, "retried": 0, "running": 0,
            "items_failed": 0, "run_ms": 0,
        }  # fmt: skip
        self.run_seconds = 0.0
        self._halt = threading.Event()
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self._done: dict[int, str] = {}
        self._finished = 0
        self._journal_file: IO[str] | None = None

    # -- the process-like face the run loop sees -------------------------------------------

    def poll(self) -> int | None:
        return self.returncode

    def progress(self) -> dict[str, int]:
        """Mini-batch counts so far: total, succeeded, failed, retried, running,
        items_failed, and run_ms (time spent inside ``run()``)."""
        return dict(self.counts)

    def stop(self) -> None:
        self._halt.set()
        with self._lock:
            workers = list(self._workers)
        for worker in workers:
            worker.stop()
        self.join(timeout=30)
        if self.returncode is None:
            self.returncode = -int(signal.SIGTERM)

    # -- the driver --------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self.returncode = self._drive()
        except BadInputError as exc:
            self.error = str(exc)
            self.returncode = 1
        except Exception as exc:  # noqa: BLE001 - the step fails; the executor goes on
            self.error = f"parallel driver error: {exc}"
            self.returncode = 1
        finally:
            with self._lock:
                workers = list(self._workers)
            for worker in workers:
                worker.stop()

    def _append_target(self) -> Path | None:
        name = self.settings.append_row_to
        if not name:
            return None
        path = self.outputs[name]
        if self.spec.output_types.get(name) == "uri_file":
            path.parent.mkdir(parents=True, exist_ok=True)
            return path
        path.mkdir(parents=True, exist_ok=True)
        return path / APPEND_FILE

    def _drive(self) -> int:
        settings = self.settings
        kind = self.spec.input_defs[settings.input_data].type
        source = self.values.get(settings.input_data)
        if source is None:
            raise BadInputError(f"step {self.spec.name!r}: input_data has no value")
        batches = mini_batches(
            kind, Path(source), settings.mini_batch_size, settings.partition_keys, self.spec.name
        )
        self.counts["total"] = len(batches)
        args = render_arguments(
            settings.program_arguments, self.values, self.outputs, self.spec.name
        )
        entry = (self.snapshot / settings.entry_script).resolve()
        # Azure ML's parallel runner reads an mltable input with the mltable package, so the
        # step's environment must have it; the worker checks, as the runner would fail.
        needs = ["mltable"] if kind == "mltable" else []
        if batches.tabular:
            needs += ["pyarrow", "pandas"]
        argv = [self.python, str(WORKER), str(entry), ",".join(needs) or "-", *args]
        self.logs.mkdir(parents=True, exist_ok=True)
        target = self._append_target()
        with (
            self.log_path.open("ab") as log,
            (self.logs / "mini_batches.jsonl").open("a", encoding="utf-8") as journal,
            (target or Path(os.devnull)).open("a", encoding="utf-8") as out,
        ):
            self._journal_file = journal
            return self._schedule(batches, argv, log, out)

    def _spawn(self, argv: list[str], log: IO[bytes], selector: selectors.BaseSelector) -> _Worker:
        worker = _Worker(argv, self.snapshot, self.env, log)
        with self._lock:
            self._workers.append(worker)
        selector.register(worker.result_fd, selectors.EVENT_READ, worker)
        return worker

    def _retire(self, worker: _Worker, selector: selectors.BaseSelector) -> None:
        with contextlib.suppress(KeyError, ValueError):
            selector.unregister(worker.result_fd)
        worker.stop()
        with self._lock:
            if worker in self._workers:
                self._workers.remove(worker)

    def _schedule(
        self,
        batches: MiniBatches,
        argv: list[str],
        log: IO[bytes],
        out: IO[str],
    ) -> int:
        pending: list[MiniBatch] = []  # to try again; taken before the next fresh one
        done = self._done
        next_to_write = 0
        selector = selectors.DefaultSelector()
        slots = min(self.settings.max_concurrency, max(1, len(batches)))
        for _ in range(slots if batches else 0):
            self._spawn(argv, log, selector)
        try:
            while self._finished < len(batches):
                if self._halt.is_set():
                    return -int(signal.SIGTERM)
                self._dispatch(pending, batches, selector)
                for key, _ in selector.select(timeout=0.2):
                    worker: _Worker = key.data
                    message = worker.receive()
                    if message is None and not worker.ready:
                        worker.proc.wait(timeout=10)
                        self.error = (
                            f"a worker exited before init() finished (exit code "
                            f"{worker.proc.returncode}); see the step log"
                        )
                        return 1
                    if message is None or message[0] == "init_error":
                        if message is not None:
                            self.error = "init() failed: " + _last_line(message[1])
                            self._write_error(message[1])
                            return 1
                        self._lost(worker, pending, selector, argv, log, "its worker exited")
                        if self._over_threshold():
                            return 1
                        continue
                    if message[0] == "ready":
                        worker.ready = True
                        continue
                    batch = worker.batch
                    worker.batch = None
                    self.counts["running"] -= 1
                    if batch is None:
                        continue
                    outcome = self._outcome(batch, message)
                    if outcome is None:
                        pending.append(batch)
                        continue
                    self._close(batch, outcome, float(message[-1]))
                    if self._over_threshold():
                        return 1
                self._check_timeouts(pending, selector, argv, log)
                if self._over_threshold():
                    return 1
                while next_to_write in done:
                    out.write(done.pop(next_to_write))
                    next_to_write += 1
            out.flush()
        finally:
            for worker in list(self._workers):
                worker.finish(timeout=30)
            selector.close()
        failed = self.counts["failed"]
        if failed:
            self._note(f"{failed} mini-batch(es) failed, within mini_batch_error_threshold")
        return 0

    def _dispatch(
        self,
        pending: list[MiniBatch],
        batches: MiniBatches,
        selector: selectors.BaseSelector,
    ) -> None:
        for worker in list(self._workers):
            if not worker.ready or worker.batch is not None:
                continue
            batch = pending.pop() if pending else batches.take()
            self.counts["total"] = len(batches)
            if batch is None:
                return
            batch.attempts += 1
            worker.batch = batch
            worker.started = time.monotonic()
            self.counts["running"] += 1
            try:
                worker.send((batch.index, _portable(batch.payload), batch.partition))
            except OSError:
                worker.batch = None
                self.counts["running"] -= 1
                batch.attempts -= 1
                pending.append(batch)
                self._retire(worker, selector)

    def _outcome(self, batch: MiniBatch, message: tuple[Any, ...]) -> str | None:
        """The text to append for a finished try; ``None`` to try the mini-batch again."""
        seconds = float(message[-1])
        self.run_seconds += seconds
        self.counts["run_ms"] = int(self.run_seconds * 1000)
        if message[0] == "ok":
            text, count = str(message[2]), int(message[3])
            short = batch.partition is None and count < batch.items
            if not short:
                self.counts["succeeded"] += 1
                return text
            error = f"run() returned {count} result(s) for {batch.items} item(s)"
            self.counts["items_failed"] += batch.items - count
            batch.errors.append(error)
            batch.failed = True
            self.counts["failed"] += 1
            return text
        batch.errors.append(str(message[2]))
        return self._retry_or_fail(batch)

    def _retry_or_fail(self, batch: MiniBatch) -> str | None:
        if batch.attempts < self.settings.max_tries:
            self.counts["retried"] += 1
            return None
        self.counts["failed"] += 1
        batch.failed = True
        if batch.partition is None:
            self.counts["items_failed"] += batch.items
        self._write_error(batch.errors[-1], batch)
        return ""

    def _close(self, batch: MiniBatch, text: str, seconds: float) -> None:
        """Record a mini-batch that will not run again: its text, its journal line."""
        self._finished += 1
        self._done[batch.index] = text
        if self._journal_file is not None:
            self._journal(self._journal_file, batch, seconds=seconds)

    def _lost(
        self,
        worker: _Worker,
        pending: list[MiniBatch],
        selector: selectors.BaseSelector,
        argv: list[str],
        log: IO[bytes],
        why: str,
    ) -> None:
        """A worker died or hung: its mini-batch failed this try; a fresh worker replaces it."""
        batch = worker.batch
        code = worker.proc.poll()
        self._retire(worker, selector)
        if batch is not None:
            self.counts["running"] -= 1
            batch.errors.append(f"{why} (exit code {code})")
            if self._retry_or_fail(batch) is None:
                pending.append(batch)
            else:
                self._close(batch, "", 0.0)
        if not self._halt.is_set():
            self._spawn(argv, log, selector)

    def _check_timeouts(
        self,
        pending: list[MiniBatch],
        selector: selectors.BaseSelector,
        argv: list[str],
        log: IO[bytes],
    ) -> None:
        limit = self.settings.run_timeout
        now = time.monotonic()
        for worker in list(self._workers):
            if worker.batch is not None and now - worker.started > limit:
                why = f"run() exceeded retry_settings.timeout {limit:g}s and was stopped"
                self._lost(worker, pending, selector, argv, log, why)

    def _over_threshold(self) -> bool:
        settings = self.settings
        failed, items = self.counts["failed"], self.counts["items_failed"]
        batch_limit, item_limit = settings.mini_batch_error_threshold, settings.error_threshold
        if batch_limit >= 0 and failed > batch_limit:
            self.error = (
                f"{failed} mini-batch(es) failed, more than mini_batch_error_threshold "
                f"{batch_limit}; see logs/mini_batches.jsonl and logs/errors.txt"
            )
            return True
        if item_limit >= 0 and items > item_limit:
            self.error = (
                f"{items} item(s) failed, more than error_threshold {item_limit}; "
                "see logs/mini_batches.jsonl and logs/errors.txt"
            )
            return True
        return False

    def _journal(self, journal: IO[str], batch: MiniBatch, *, seconds: float) -> None:
        status = "failed" if batch.failed else "succeeded"
        entry = {
            "index": batch.index,
            **batch.describe(),
            "status": status,
            "attempts": batch.attempts,
            "run_seconds": round(seconds, 6),
        }
        if batch.errors and status == "failed":
            entry["error"] = _last_line(batch.errors[-1])
        journal.write(json.dumps(entry, default=str) + "\n")

    def _write_error(self, text: str, batch: MiniBatch | None = None) -> None:
        where = f"mini-batch {batch.index} {batch.describe()}" if batch else "init()"
        with (self.logs / "errors.txt").open("a", encoding="utf-8") as handle:
            handle.write(f"--- {where}\n{text[-ERROR_TAIL:]}\n")

    def _note(self, text: str) -> None:
        with (self.logs / "errors.txt").open("a", encoding="utf-8") as handle:
            handle.write(text + "\n")


def _last_line(text: str) -> str:
    lines = [line for line in str(text).strip().splitlines() if line.strip()]
    return lines[-1][:400] if lines else ""
