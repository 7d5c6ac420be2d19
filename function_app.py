"""Composition root of the function app: create the app, register the blueprints, nothing else.

Importing this module must stay cheap (no pandas, no azure.ai.ml, no clients): the
Functions host imports it on every cold start. Collaborators are built lazily by
``composition.get_services`` on first use.
"""

from __future__ import annotations

import azure.durable_functions as df
import azure.functions as func

from orchestrators import activities, flows
from triggers import aml_events, conditioning, dashboard, health, orchestrations, timers


def make_app() -> df.DFApp:
    """A new app object with every blueprint (``get_functions()`` works once per app)."""
    new_app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
    for blueprint in (
        health.bp,
        dashboard.bp,
        conditioning.bp,
        orchestrations.bp,
        aml_events.bp,
        timers.bp,
        flows.bp,
        activities.bp,
    ):
        new_app.register_functions(blueprint)
    return new_app


app = make_app()
