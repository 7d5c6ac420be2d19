"""A warm start for job processes: import once, fork one process per job.

Every job runs in a process of its own (``python -m local.aml execute``), so a job outlives
the caller that submitted it and one job's state never leaks into the next. Started cold,
such a process spends seconds importing azure-ai-ml (to read the pipeline) and MLflow (for the
workspace endpoint and the job's runs) before its first step: a fixed cost per job that
dominated short jobs, as the demo's are.

``python -m local.aml launch [OPTIONS]`` imports those modules once, then reads job names from
its standard input, one per line; for each it forks a child that becomes the job's process —
a session of its own, output appended to the job's ``executor.log``, exactly the
``execute`` command with the same options — and answers the child's pid on a line of its own
(``error: ...`` when the job cannot be started). It reaps finished children, and exits when its
standard input closes; running jobs carry on. ``Launcher`` is the caller's side.

Forking is safe here because the launcher holds no threads, connections or open stores: it has
only imported modules. A caller that cannot use a launcher (it died, or ``fork`` is missing)
falls back to starting ``execute`` processes cold.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

# What a job process imports before its first step, beyond the executor itself.
WARM_MODULES = (
    "azure.ai.ml",
    "mlflow",
    "mlflow.tracking",
    "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.model_registry.sqlalchemy_store",
    "mlflow.server",
    "mlflow.server.handlers",
    "local.aml.mlflow_front",
)


class LaunchedJob:
    """A job process forked by the launcher: ``poll``/``wait`` as on ``subprocess.Popen``.

    The launcher, its parent, reaps it; once reaped the pid is gone, which is how it is seen
    to have ended (its outcome is in the job record, not in an exit code)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                self.returncode = 0
            except PermissionError:  # the pid now belongs to another user's process
                self.returncode = 0
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"job process {self.pid}", timeout or 0.0)
            time.sleep(0.1)
        return self.returncode or 0


class Launcher:
    """The caller's side: starts ``launch`` with the executor's options and asks it for jobs."""

    def __init__(self, options: Sequence[str], log: Path, cwd: Path) -> None:
        self._options = list(options)
        self._log = log
        self._cwd = cwd
        self._proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()

    def start_job(self, name: str, timeout: float = 60.0) -> LaunchedJob | None:
        """Fork the process of job ``name``; None when the launcher cannot (the caller then
        starts the job cold)."""
        with self._lock:
            proc = self._ensure()
            if proc is None or proc.stdin is None or proc.stdout is None:
                return None
            try:
                proc.stdin.write(name + "\n")
                proc.stdin.flush()
                ready, _, _ = select.select([proc.stdout], [], [], timeout)
                answer = proc.stdout.readline().strip() if ready else ""
            except (OSError, ValueError):
                answer = ""
            if not answer.isdigit():
                self._stop(proc)
                return None
            return LaunchedJob(int(answer))

    def close(self) -> None:
        """Let the launcher exit (the jobs it started keep running)."""
        with self._lock:
            if self._proc is not None:
                with contextlib.suppress(OSError, ValueError):
                    if self._proc.stdin is not None:
                        self._proc.stdin.close()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._proc.wait(timeout=10)
                self._stop(self._proc)

    def _ensure(self) -> subprocess.Popen[str] | None:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        if self._proc is not None or not hasattr(os, "fork"):
            return None  # it died once: do not keep paying for a broken launcher
        self._log.parent.mkdir(parents=True, exist_ok=True)
        with self._log.open("ab") as err:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "local.aml", "launch", *self._options],
                cwd=self._cwd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                start_new_session=True,
            )
        return self._proc

    def _stop(self, proc: subprocess.Popen[str]) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)


def _reap() -> None:
    with contextlib.suppress(ChildProcessError):
        while True:
            pid, _ = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                return


def _child(name: str, job_log: Path, options: Sequence[str], ready: int) -> None:
    """Become job ``name``'s process; never returns. Writes to ``ready`` once it leads a
    session of its own, so its pid is never handed out before its group exists."""
    code = 1
    try:
        os.setsid()
        os.write(ready, b"1")
        os.close(ready)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        fd = os.open(job_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        os.close(null)
        from local.aml.__main__ import main

        code = main(["execute", name, *options])
    except BaseException:  # noqa: BLE001 - the job process must end here, whatever happened
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def serve(options: Sequence[str], root: Path, stdin: IO[str], stdout: IO[str]) -> int:
    """The launcher's loop (``python -m local.aml launch``)."""
    import importlib

    for module in WARM_MODULES:
        with contextlib.suppress(ImportError):
            importlib.import_module(module)
    from local.aml.store import JobStore

    store = JobStore(root)
    while True:
        ready, _, _ = select.select([stdin], [], [], 1.0)
        _reap()
        if not ready:
            continue
        line = stdin.readline()
        if not line:
            return 0
        name = line.strip()
        try:
            job_log = store.job_dir(name) / "executor.log"
            if not job_log.parent.is_dir():
                raise FileNotFoundError(f"no job {name!r}")
        except (OSError, ValueError) as exc:
            stdout.write(f"error: {exc}\n")
            stdout.flush()
            continue
        stdout.flush()
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            _child(name, job_log, options, write_end)
        os.close(write_end)
        os.read(read_end, 1)  # the child has its session (or died: then this reads nothing)
        os.close(read_end)
        stdout.write(f"{pid}\n")
        stdout.flush()


__all__ = ["WARM_MODULES", "LaunchedJob", "Launcher", "serve"]
