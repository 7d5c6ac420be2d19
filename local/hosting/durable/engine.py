"""The local Durable Functions engine: backend, worker and client, and their management API."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import durabletask.internal.orchestrator_service_pb2 as pb
import grpc
from durabletask import client as dt_client
from durabletask import worker as dt_worker

from adapters.durable_limits import check_instance_id, large_payload_note, payload_bytes
from adapters.errors import BadInputError, ConflictError, NotFoundError
from local.hosting.durable.backend import LoopbackBackend
from local.hosting.durable.codec import DurableFunctionsDataConverter
from local.hosting.durable.driver import (
    ActivityFn,
    OrchestratorFn,
    activity_entry,
    orchestrator_entry,
)
from local.hosting.durable.http import (
    InstanceView,
    add_durable_routes,
    client_binding_json,
    runtime_status_name,
    view_from_state,
)

if TYPE_CHECKING:
    from aiohttp import web

_log = logging.getLogger(__name__)


class _StreamCancelledOnStop(logging.Filter):
    """Drop the SDK's warning about its own work stream being cancelled when a worker stops."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (
            message.startswith("Error in work item stream") and "Locally cancelled" in message
        )


# Stable names (not __name__): operators and `python -m local` tune these loggers.
_worker_log = logging.getLogger("local.hosting.durable.worker")
_worker_log.addFilter(_StreamCancelledOnStop())

# Statuses a start request may replace (the Functions host's default, NonRunningStates).
_REPLACEABLE_STATUSES = (
    pb.ORCHESTRATION_STATUS_COMPLETED,
    pb.ORCHESTRATION_STATUS_FAILED,
    pb.ORCHESTRATION_STATUS_TERMINATED,
    pb.ORCHESTRATION_STATUS_CANCELED,
)

_GRPC_CHANNEL_OPTIONS = [
    # Loopback only: never route the sidecar connection through an HTTP proxy from the env.
    ("grpc.enable_http_proxy", 0),
]


class LocalDurableEngine:
    """Durable Functions orchestrators and activities on a loopback Durable Task engine.

    Lifecycle: :meth:`start` (backend, worker, client), :meth:`stop` (idempotent). The
    management methods (``start_instance`` …) are blocking gRPC calls; the HTTP layer runs
    them off the event loop. They raise ``NotFoundError`` for unknown instances,
    ``ConflictError`` for state conflicts and ``BadInputError`` for unknown orchestrators.
    """

    def __init__(
        self,
        *,
        task_hub: str,
        orchestrators: Mapping[str, OrchestratorFn],
        activities: Mapping[str, ActivityFn],
        max_concurrency: int = 16,
    ) -> None:
        if max_concurrency < 1:
            raise BadInputError("max_concurrency must be at least 1")
        self.task_hub = task_hub
        self._orchestrators = dict(orchestrators)
        self._activities = dict(activities)
        self._max_concurrency = max_concurrency
        self._converter = DurableFunctionsDataConverter()
        self._lifecycle = threading.RLock()
        self._backend: LoopbackBackend | None = None
        self._worker: dt_worker.TaskHubGrpcWorker | None = None
        self._worker_channel: grpc.Channel | None = None
        self._client: dt_client.TaskHubGrpcClient | None = None
        self._client_channel: grpc.Channel | None = None

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>`` of the gRPC backend (empty before :meth:`start`)."""
        return self._backend.address if self._backend else ""

    @property
    def orchestrator_names(self) -> frozenset[str]:
        return frozenset(self._orchestrators)

    def start(self) -> None:
        with self._lifecycle:
            if self._backend is not None:
                return
            backend = LoopbackBackend(server_threads=max(64, 4 * self._max_concurrency))
            address = backend.start()
            self._backend = backend
            try:
                self._start_worker()
                self._client_channel = grpc.insecure_channel(address, options=_GRPC_CHANNEL_OPTIONS)
                self._client = dt_client.TaskHubGrpcClient(
                    channel=self._client_channel,
                    data_converter=self._converter,
                    logger=logging.getLogger("local.hosting.durable.client"),
                )
            except Exception:
                self.stop()
                raise
            _log.info("durable engine for task hub %s listening on %s", self.task_hub, address)

    def stop(self) -> None:
        with self._lifecycle:
            self._stop_worker()
            if self._client is not None:
                self._client.close()
                self._client = None
            if self._client_channel is not None:
                self._client_channel.close()
                self._client_channel = None
            if self._backend is not None:
                self._backend.stop(grace=1.0)
                self._backend = None

    def restart_worker(self) -> None:
        """Stop the worker and start a fresh one; in-flight instances resume on the new one."""
        with self._lifecycle:
            backend = self._require_backend()
            self._stop_worker()
            backend.recover_abandoned_work()
            self._start_worker()

    def __enter__(self) -> LocalDurableEngine:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _start_worker(self) -> None:
        backend = self._require_backend()
        channel = grpc.insecure_channel(backend.address, options=_GRPC_CHANNEL_OPTIONS)
        worker = dt_worker.TaskHubGrpcWorker(
            channel=channel,
            data_converter=self._converter,
            concurrency_options=dt_worker.ConcurrencyOptions(
                maximum_concurrent_activity_work_items=self._max_concurrency,
                maximum_concurrent_orchestration_work_items=self._max_concurrency,
                maximum_thread_pool_workers=self._max_concurrency,
            ),
            # Lifecycle spans belong to the host's telemetry, not to the local engine.
            emit_trace_spans=False,
            # Route the SDK's logs through the app's logging configuration (its default
            # logger prints every replay at INFO to stderr).
            logger=_worker_log,
        )
        for name, orchestrator in self._orchestrators.items():
            worker.add_orchestrator(orchestrator_entry(name, orchestrator))
        for name, activity in self._activities.items():
            worker.add_activity(activity_entry(name, activity))
        worker.start()  # type: ignore[no-untyped-call]
        self._worker, self._worker_channel = worker, channel

    def _stop_worker(self) -> None:
        if self._worker is not None:
            self._worker.stop()  # type: ignore[no-untyped-call]
            self._worker = None
        if self._worker_channel is not None:
            self._worker_channel.close()
            self._worker_channel = None

    def _require_backend(self) -> LoopbackBackend:
        if self._backend is None:
            raise RuntimeError("The durable engine is not started; call start() first")
        return self._backend

    def _require_client(self) -> dt_client.TaskHubGrpcClient:
        if self._client is None:
            raise RuntimeError("The durable engine is not started; call start() first")
        return self._client

    # -- HTTP -------------------------------------------------------------------------------

    def add_routes(
        self,
        app: web.Application,
        *,
        base_url: Callable[[], str],
        system_key: str,
        master_key: str | None = None,
    ) -> None:
        """Serve the Durable HTTP API on ``app`` (see :mod:`local.hosting.durable.http`)."""
        add_durable_routes(
            app, self, base_url=base_url, system_key=system_key, master_key=master_key
        )

    def client_binding(self, base_url: str, system_key: str) -> str:
        """The durable client binding JSON the real ``DurableOrchestrationClient`` is built from."""
        return client_binding_json(base_url, self.task_hub, system_key)

    # -- management (blocking) --------------------------------------------------------------

    def start_instance(self, name: str, instance_id: str | None, input_value: Any) -> str:
        """Start ``name``; replaces a terminal instance with the same id, refuses a live one.

        Raises ``BadInputError`` for an unknown orchestrator or an instance id Azure refuses.
        """
        if name not in self._orchestrators:
            raise BadInputError(
                f"The function '{name}' doesn't exist, is disabled, or is not an orchestrator "
                "function.",
                code="orchestrator_not_found",
            )
        if instance_id:
            # What the Durable extension's StartNewAsync refuses (see adapters.durable_limits).
            check_instance_id(instance_id)
        note = large_payload_note(
            f"input of orchestrator '{name}'", payload_bytes(self._converter.serialize(input_value))
        )
        if note is not None:
            _log.warning("starting %s: %s", instance_id or name, note)
        client = self._require_client()
        policy = pb.OrchestrationIdReusePolicy(replaceableStatus=list(_REPLACEABLE_STATUSES))
        try:
            return client.schedule_new_orchestration(
                name,
                input=input_value,
                instance_id=instance_id or uuid.uuid4().hex,
                reuse_id_policy=policy,
            )
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.ALREADY_EXISTS:
                status = self._status_name(instance_id or "")
                raise ConflictError(
                    f"An Orchestration instance with the status {status} already exists."
                ) from exc
            raise

    def _status_name(self, instance_id: str) -> str:
        state = self._require_client().get_orchestration_state(instance_id, fetch_payloads=False)
        return runtime_status_name(state.runtime_status.value) if state else "Unknown"

    def get_instance(
        self,
        instance_id: str,
        *,
        show_input: bool = True,
        show_history: bool = False,
        show_history_output: bool = False,
    ) -> InstanceView | None:
        state = self._require_client().get_orchestration_state(instance_id, fetch_payloads=True)
        if state is None:
            return None
        history = None
        if show_history:
            history = self._require_backend().history_of(instance_id) or []
        return view_from_state(
            state,
            show_input=show_input,
            history=history,
            show_history_output=show_history_output,
        )

    def list_instances(
        self,
        *,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        statuses: list[int] | None = None,
        prefix: str | None = None,
        show_input: bool = False,
    ) -> list[InstanceView]:
        query = dt_client.OrchestrationQuery(
            created_time_from=created_from,
            created_time_to=created_to,
            runtime_status=[dt_client.OrchestrationStatus(s) for s in statuses]
            if statuses
            else None,
            fetch_inputs_and_outputs=True,
            instance_id_prefix=prefix,
        )
        states = self._require_client().get_all_orchestration_states(query)
        return [view_from_state(s, show_input=show_input) for s in states]

    def raise_event(self, instance_id: str, event_name: str, data: Any) -> None:
        self._require_client().raise_orchestration_event(instance_id, event_name, data=data)

    def terminate(self, instance_id: str, reason: str | None) -> None:
        self._require_client().terminate_orchestration(instance_id, output=reason)

    def suspend(self, instance_id: str, reason: str | None) -> None:
        self._require_client().suspend_orchestration(instance_id, reason=reason)

    def resume(self, instance_id: str, reason: str | None) -> None:
        self._require_client().resume_orchestration(instance_id, reason=reason)

    def rewind(self, instance_id: str, reason: str | None) -> None:
        self._require_client().rewind_orchestration(instance_id, reason=reason)

    def restart(self, instance_id: str, *, new_instance_id: bool) -> str:
        try:
            return self._require_client().restart_orchestration(
                instance_id, restart_with_new_instance_id=new_instance_id
            )
        except grpc.RpcError as exc:
            code = exc.code()
            if code == grpc.StatusCode.NOT_FOUND:
                raise NotFoundError(f"No instance with ID '{instance_id}' found.") from exc
            if code == grpc.StatusCode.FAILED_PRECONDITION:
                raise ConflictError(
                    f"Instance '{instance_id}' is still running; only finished instances restart"
                ) from exc
            raise

    def purge(self, instance_id: str) -> int:
        result = self._require_client().purge_orchestration(instance_id, recursive=False)
        return result.deleted_instance_count

    def purge_by(
        self,
        *,
        created_from: datetime | None,
        created_to: datetime | None,
        statuses: list[int] | None,
    ) -> int:
        result = self._require_client().purge_orchestrations_by(
            created_time_from=created_from,
            created_time_to=created_to,
            runtime_status=[dt_client.OrchestrationStatus(s) for s in statuses]
            if statuses
            else None,
        )
        return result.deleted_instance_count

    def history_size(self, instance_id: str) -> tuple[int, int]:
        """(events, bytes) of an instance's current history; bytes are the Durable Task
        protobuf encoding (Azure Storage keeps the same events as UTF-16 table rows, larger)."""
        history = self._require_backend().history_of(instance_id) or []
        return len(history), sum(event.ByteSize() for event in history)

    def peak_custom_status_bytes(self, instance_id: str) -> int:
        """The largest custom status the instance has set, in UTF-16 bytes as Azure counts."""
        return self._require_backend().peak_custom_status_bytes(instance_id)

    def wait_for_completion(self, instance_id: str, timeout: float = 30.0) -> InstanceView:
        """Block until the instance is terminal; raises ``TimeoutError``/``NotFoundError``."""
        state = self._require_client().wait_for_orchestration_completion(
            instance_id, fetch_payloads=True, timeout=timeout
        )
        if state is None:
            raise NotFoundError(f"No instance with ID '{instance_id}' found.")
        return view_from_state(state, show_input=True)
