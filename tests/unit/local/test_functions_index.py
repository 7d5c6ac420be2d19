from __future__ import annotations

import azure.functions as func
import pytest

from local.hosting.functions import ALL_METHODS, AppIndexError, index_functions
from tests.integration.apps.every_binding import make_app


def test_every_binding_kind_is_indexed_with_its_details() -> None:
    specs = {s.name: s for s in index_functions(make_app().get_functions())}
    echo = specs["echo"]
    assert echo.trigger_type == "httpTrigger" and echo.methods == ("POST",)
    assert echo.auth_level == "function"
    assert specs["open_route"].auth_level == "anonymous"
    assert specs["on_drop"].blob_path is not None
    assert specs["on_drop"].blob_connection == "DropStorage"
    assert specs["every_second"].schedule is not None
    assert specs["pipeline"].durable_name == "pipeline" and specs["pipeline"].is_durable
    assert [b.type for b in specs["start_orchestration"].extra_inputs] == ["durableClient"]


def test_unsupported_triggers_and_bindings_fail_at_start_naming_the_function() -> None:
    app = func.FunctionApp()

    @app.queue_trigger(arg_name="msg", queue_name="q", connection="C")
    def on_queue(msg: func.QueueMessage) -> None:
        return None

    @app.route(route="x")
    @app.blob_output(arg_name="out", path="c/x", connection="C")
    def writes_blob(req: func.HttpRequest, out: func.Out[str]) -> str:
        return "x"

    with pytest.raises(AppIndexError) as info:
        index_functions(app.get_functions())
    message = str(info.value)
    assert "on_queue: trigger type 'queueTrigger' is not supported" in message
    assert "writes_blob: binding(s) blob (out)" in message


def test_a_route_without_methods_accepts_all() -> None:
    app = func.FunctionApp()

    @app.route(route="any")
    def anything(req: func.HttpRequest) -> str:
        return "x"

    (spec,) = index_functions(app.get_functions())
    assert spec.methods == ALL_METHODS


def test_a_bad_schedule_names_the_function() -> None:
    app = func.FunctionApp()

    @app.timer_trigger(arg_name="t", schedule="whenever")
    def bad_timer(t: func.TimerRequest) -> None:
        return None

    with pytest.raises(AppIndexError, match="bad_timer: schedule 'whenever'"):
        index_functions(app.get_functions())


def test_app_settings_in_binding_expressions_are_resolved_or_named() -> None:
    app = func.FunctionApp()

    @app.timer_trigger(arg_name="t", schedule="%MY_SCHEDULE%")
    def scheduled(t: func.TimerRequest) -> None:
        return None

    (spec,) = index_functions(app.get_functions(), {"MY_SCHEDULE": "0 */5 * * * *"})
    assert spec.schedule is not None and spec.schedule.expression == "0 */5 * * * *"

    app2 = func.FunctionApp()

    @app2.timer_trigger(arg_name="t", schedule="%NOT_SET%")
    def unscheduled(t: func.TimerRequest) -> None:
        return None

    with pytest.raises(AppIndexError, match=r"unscheduled: app setting\(s\) NOT_SET"):
        index_functions(app2.get_functions(), {})
