"""The Durable Task in-memory backend, bound to loopback, with recovery of abandoned work."""

from __future__ import annotations

import json
import logging
import threading
from concurrent import futures
from typing import Any

import durabletask.internal.orchestrator_service_pb2 as pb
import durabletask.internal.orchestrator_service_pb2_grpc as stubs
import grpc
from durabletask.testing import InMemoryOrchestrationBackend
from durabletask.testing.in_memory_backend import ActivityWorkItem, OrchestrationInstance

from adapters.durable_limits import custom_status_size

_log = logging.getLogger(__name__)


def _status_bytes(text: str) -> int:
    try:
        value = json.loads(text)
    except ValueError:
        value = text
    return custom_status_size(value).utf16_bytes


class LoopbackBackend(InMemoryOrchestrationBackend):
    """The Durable Task in-memory backend on 127.0.0.1, with recovery of abandoned work.

    The stock backend listens on ``[::]`` with 10 server threads; a worker's streaming call,
    the client's waits and every completion each hold a thread, so this one takes a free
    loopback port and ``server_threads`` threads. It also remembers every work item it handed
    out until the worker reports it done: :meth:`recover_abandoned_work` re-queues those a
    stopped worker never ran (the stock backend would leave them stuck in flight).
    """

    def __init__(self, *, server_threads: int = 64, max_history_size: int = 100_000) -> None:
        super().__init__(max_history_size=max_history_size, port=0)
        self._server_threads = server_threads
        self._outstanding_orchestrations: dict[str, pb.WorkItem] = {}
        self._outstanding_activities: dict[tuple[str, int], pb.WorkItem] = {}
        self._tracking_lock = threading.Lock()
        self._streams_changed = threading.Condition(self._tracking_lock)
        self._active_streams = 0
        self._peak_status_bytes: dict[str, int] = {}
        self.address = ""

    def start(self) -> str:
        self._shutdown_event.clear()
        server = grpc.server(
            futures.ThreadPoolExecutor(
                max_workers=self._server_threads, thread_name_prefix="durable-backend"
            )
        )
        stubs.add_TaskHubSidecarServiceServicer_to_server(self, server)  # type: ignore[no-untyped-call]
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        self._server = server
        self._port = port
        self.address = f"127.0.0.1:{port}"
        return self.address

    def GetWorkItems(self, request: pb.GetWorkItemsRequest, context: grpc.ServicerContext) -> Any:
        with self._streams_changed:
            self._active_streams += 1
        try:
            for item in super().GetWorkItems(request, context):
                with self._tracking_lock:
                    if item.HasField("orchestratorRequest"):
                        orch = item.orchestratorRequest
                        self._outstanding_orchestrations[orch.instanceId] = item
                    elif item.HasField("activityRequest"):
                        act = item.activityRequest
                        key = (act.orchestrationInstance.instanceId, act.taskId)
                        self._outstanding_activities[key] = item
                yield item
        finally:
            with self._streams_changed:
                self._active_streams -= 1
                self._streams_changed.notify_all()

    def CompleteOrchestratorTask(
        self, request: pb.OrchestratorResponse, context: grpc.ServicerContext
    ) -> pb.CompleteTaskResponse:
        with self._tracking_lock:
            self._outstanding_orchestrations.pop(request.instanceId, None)
            if request.HasField("customStatus"):
                size = _status_bytes(request.customStatus.value)
                if size > self._peak_status_bytes.get(request.instanceId, 0):
                    self._peak_status_bytes[request.instanceId] = size
        return super().CompleteOrchestratorTask(request, context)

    def peak_custom_status_bytes(self, instance_id: str) -> int:
        """The largest custom status an instance has set, as Azure measures it (UTF-16 bytes)."""
        with self._tracking_lock:
            return self._peak_status_bytes.get(instance_id, 0)

    def CompleteActivityTask(
        self, request: pb.ActivityResponse, context: grpc.ServicerContext
    ) -> pb.CompleteTaskResponse:
        with self._tracking_lock:
            self._outstanding_activities.pop((request.instanceId, request.taskId), None)
        return super().CompleteActivityTask(request, context)

    def AbandonTaskOrchestratorWorkItem(
        self, request: pb.AbandonOrchestrationTaskRequest, context: grpc.ServicerContext
    ) -> pb.AbandonOrchestrationTaskResponse:
        with self._tracking_lock:
            for instance_id, item in list(self._outstanding_orchestrations.items()):
                if item.completionToken == request.completionToken:
                    del self._outstanding_orchestrations[instance_id]
        return super().AbandonTaskOrchestratorWorkItem(request, context)

    def _watch_sub_orchestration(
        self, parent_instance_id: str, sub_instance_id: str, task_id: int
    ) -> None:
        # The stock watcher's "no timeout" wait gives up after 30 s, so a sub-orchestration
        # running longer never reported back and its parent waited forever. Wait in slices
        # until the child really ends, then let the stock code deliver its result.
        def wait_then_deliver() -> None:
            while not self._shutdown_event.is_set():
                done = self._wait_for_state(
                    sub_instance_id, self._is_terminal_status_check, timeout=5.0
                )
                if done is not None:
                    InMemoryOrchestrationBackend._watch_sub_orchestration(
                        self, parent_instance_id, sub_instance_id, task_id
                    )
                    return

        threading.Thread(target=wait_then_deliver, name="sub-orchestration", daemon=True).start()

    def _process_create_sub_orchestration_action(
        self, instance: OrchestrationInstance, action: pb.OrchestratorAction
    ) -> None:
        super()._process_create_sub_orchestration_action(instance, action)
        # The stock backend starts the child without naming its parent, so the child's
        # context would report no parent_instance_id; record it as a real sidecar does.
        child = self._instances.get(action.createSubOrchestration.instanceId)
        if child is None:
            return
        for event in child.pending_events:
            if event.HasField("executionStarted"):
                parent = event.executionStarted.parentInstance
                parent.taskScheduledId = action.id
                parent.name.value = instance.name
                parent.orchestrationInstance.instanceId = instance.instance_id
                break

    def recover_abandoned_work(self, *, stream_wait_seconds: float = 5.0) -> int:
        """Re-queue work handed to a worker that has stopped without finishing it.

        Call only when no worker is connected (between stopping one and starting the next).
        It first waits (up to ``stream_wait_seconds``) for the server side of cancelled work
        streams to wind down, since a dying stream could otherwise take re-queued work with
        it; anything still outstanding then can no longer complete. Activities may therefore
        run twice, which is the at-least-once contract of Durable Functions. Returns the number
        of work items re-queued.
        """
        with self._streams_changed:
            idle = self._streams_changed.wait_for(
                lambda: self._active_streams == 0, timeout=stream_wait_seconds
            )
        if not idle:
            _log.warning(
                "work streams still open while recovering abandoned work; "
                "items they hold may run twice"
            )
        with self._tracking_lock:
            orchestrations = list(self._outstanding_orchestrations.values())
            activities = list(self._outstanding_activities.values())
            self._outstanding_orchestrations.clear()
            self._outstanding_activities.clear()
        recovered = 0
        with self._lock:
            for item in orchestrations:
                instance_id = item.orchestratorRequest.instanceId
                instance = self._instances.get(instance_id)
                if instance is None or instance_id not in self._orchestration_in_flight:
                    continue
                if str(instance.completion_token) != item.completionToken:
                    continue
                instance.pending_events = list(instance.dispatched_events) + list(
                    instance.pending_events
                )
                instance.dispatched_events.clear()
                self._orchestration_in_flight.discard(instance_id)
                self._enqueue_orchestration(instance_id)
                recovered += 1
            for item in activities:
                act = item.activityRequest
                instance_id = act.orchestrationInstance.instanceId
                if instance_id not in self._instances:
                    continue
                self._activity_queue.append(
                    ActivityWorkItem(
                        instance_id=instance_id,
                        name=act.name,
                        task_id=act.taskId,
                        input=act.input.value if act.HasField("input") else None,
                        completion_token=int(item.completionToken),
                    )
                )
                recovered += 1
            if recovered:
                self._work_available.set()
        if recovered:
            _log.info("re-queued %d work item(s) left by a stopped worker", recovered)
        return recovered

    def history_of(self, instance_id: str) -> list[pb.HistoryEvent] | None:
        """A copy of the committed history of an instance, or None when it does not exist."""
        with self._lock:
            instance = self._instances.get(instance_id)
            if instance is None:
                return None
            copies: list[pb.HistoryEvent] = []
            for event in instance.history:
                clone = pb.HistoryEvent()
                clone.CopyFrom(event)
                copies.append(clone)
            return copies
