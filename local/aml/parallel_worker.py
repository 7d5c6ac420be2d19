"""One worker process of a local parallel job (run as a script, in the step's snapshot).

    python parallel_worker.py ENTRY_SCRIPT TASK_FD RESULT_FD NEEDS [PROGRAM ARGUMENTS ...]

Like an Azure ML parallel worker it imports the entry script with ``sys.argv`` set to the
task's program arguments, calls ``init()`` once, then ``run(mini_batch)`` — or
``run(mini_batch, mini_batch_context)`` when ``run`` takes two parameters — for each
mini-batch it is handed, and ``shutdown()`` (when defined) at the end. Mini-batches arrive and
results leave as length-prefixed pickles on the two inherited pipes, so the entry script's own
prints go to the step log untouched; a table arrives as Arrow IPC bytes and becomes a pandas
DataFrame here, with the environment's own pyarrow and pandas. ``NEEDS`` names the modules
(comma separated, or ``-``) the environment must provide before ``init()``: ``mltable`` for an
mltable input, as Azure ML's runner reads those with it, and pandas and pyarrow for a table.
Deliberately standard library only: it runs with the step's interpreter and imports nothing of
the project.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import pickle
import struct
import sys
import time
import traceback
from pathlib import Path
from typing import Any

_HEADER = struct.Struct(">Q")


class MiniBatchContext:
    """What ``run(mini_batch, mini_batch_context)`` receives, named as Azure ML names it."""

    def __init__(self, minibatch_index: int, partition_key_value: dict[str, Any] | None) -> None:
        self.minibatch_index = minibatch_index
        self.partition_key_value = partition_key_value or {}

    def __repr__(self) -> str:
        return (
            f"MiniBatchContext(minibatch_index={self.minibatch_index}, "
            f"partition_key_value={self.partition_key_value})"
        )


def _read_exact(fd: int, size: int) -> bytes | None:
    chunks = []
    while size:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def receive(fd: int) -> Any:
    header = _read_exact(fd, _HEADER.size)
    if header is None:
        return None
    body = _read_exact(fd, _HEADER.unpack(header)[0])
    # The only writer is the executor that started this worker, over a private pipe.
    return None if body is None else pickle.loads(body)  # noqa: S301


def send(fd: int, message: Any) -> None:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    data = _HEADER.pack(len(body)) + body
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _rows(result: Any) -> tuple[str, int]:
    """``run()``'s return value as appended text and its element count."""
    if result is None:
        return "", 0
    to_csv = getattr(result, "to_csv", None)
    if callable(to_csv):  # a pandas DataFrame: one line per row, space separated, no header
        text = to_csv(sep=" ", header=False, index=False)
        return str(text), len(result)
    try:
        items = list(result)
    except TypeError:
        items = [result]
    return "".join(f"{item}\n" for item in items), len(items)


ARROW_PAYLOAD = "__arrow_ipc__"


def _table(payload: Any) -> Any:
    """The mini-batch as ``run()`` receives it: a DataFrame for a table, else as sent."""
    if isinstance(payload, dict) and ARROW_PAYLOAD in payload:
        import pyarrow as pa

        with pa.ipc.open_stream(pa.py_buffer(payload[ARROW_PAYLOAD])) as reader:
            return reader.read_all().to_pandas()
    return payload


def _load(entry: Path) -> Any:
    sys.path.insert(0, str(entry.parent))
    spec = importlib.util.spec_from_file_location(entry.stem, entry)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {entry}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[entry.stem] = module
    spec.loader.exec_module(module)
    return module


def main(argv: list[str]) -> int:
    entry, task_fd, result_fd, needs = Path(argv[0]), int(argv[1]), int(argv[2]), argv[3]
    # Python put this file's folder first on sys.path; the entry script must not see the
    # executor's modules (a user module named like one of them would be shadowed).
    here = str(Path(__file__).resolve().parent)
    sys.path[:] = [p for p in sys.path if p and str(Path(p).resolve()) != here]
    sys.argv = [str(entry), *argv[4:]]
    try:
        # What the environment must provide, imported before init() as Azure ML's runner
        # does (and so a table's pandas and pyarrow load now, not inside the first batch).
        for module_name in filter(None, needs.split(",")):
            if module_name != "-":
                importlib.import_module(module_name)
        module = _load(entry)
        if callable(getattr(module, "init", None)):
            module.init()
        run = module.run
        with_context = len(inspect.signature(run).parameters) >= 2
    except BaseException:  # noqa: BLE001 - reported to the driver, which fails the step
        send(result_fd, ("init_error", traceback.format_exc()))
        return 1
    send(result_fd, ("ready",))
    while True:
        task = receive(task_fd)
        if task is None:
            break
        index, payload, partition = task
        try:
            batch = _table(payload)
        except Exception:  # noqa: BLE001 - reported like a failed run(), never a crash
            send(result_fd, ("error", index, traceback.format_exc(), 0.0))
            continue
        started = time.perf_counter()
        try:
            result = run(batch, MiniBatchContext(index, partition)) if with_context else run(batch)
            text, count = _rows(result)
            send(result_fd, ("ok", index, text, count, time.perf_counter() - started))
        except Exception:  # noqa: BLE001 - a failed mini-batch is reported and retried
            elapsed = time.perf_counter() - started
            send(result_fd, ("error", index, traceback.format_exc(), elapsed))
        sys.stdout.flush()
    if callable(getattr(module, "shutdown", None)):
        module.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
