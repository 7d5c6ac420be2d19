"""Local Durable Functions engine: orchestrators run on Microsoft's Durable Task engine.

The app's orchestrators are ordinary ``azure-functions-durable`` generator functions over a
``DurableOrchestrationContext``. Locally they run on the ``durabletask`` package: an in-memory
sidecar backend (gRPC on loopback), a ``TaskHubGrpcWorker`` and a ``TaskHubGrpcClient``.
Replay and non-determinism detection are the Durable Task engine's own; this package only

* translates the Durable Functions context surface onto ``durabletask.task.OrchestrationContext``
  (:class:`DurableContextShim`), keeping Durable Functions semantics where they differ
  (``task_all`` fails fast, ``task_any`` returns the winning task, failed tasks raise a plain
  ``Exception`` whose message carries the activity's error);
* serialises payloads exactly like Durable Functions (``df_dumps`` / ``df_loads``);
* binds the backend to 127.0.0.1 on a free port with enough server threads for streaming
  calls, and recovers work that a stopped worker received but never ran, so that
  :meth:`LocalDurableEngine.restart_worker` loses nothing;
* serves the Durable HTTP API (:mod:`local.hosting.durable.http`).

Differences from Azure are listed in ``docs/local-durable.md``.

Modules, one job each: ``codec`` (payload format), ``context`` (the context shim and its task
objects), ``driver`` (orchestrator and activity entries for the worker), ``backend`` (the
loopback backend), ``engine`` (lifecycle and management) and ``http`` (the HTTP API).
"""

from __future__ import annotations

from local.hosting.durable.backend import LoopbackBackend
from local.hosting.durable.engine import LocalDurableEngine

__all__ = ["LocalDurableEngine", "LoopbackBackend"]
