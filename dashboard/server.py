"""Serve the dashboard from a running aiohttp app (the local Functions host mounts it).

``add_dashboard_routes(app, load)`` adds ``GET /dashboard`` (redirects to ``/dashboard/``),
``GET /dashboard/`` (the overview) and ``GET /dashboard/<page>.html``. Every request reads
the state afresh through ``load`` in a worker thread, so the event loop never blocks on the
registry or the data lake. Register the routes before any catch-all route.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

from dashboard.model import DashboardData
from dashboard.pages import PAGES, render_dashboard

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PREFIX = "/dashboard"


def dashboard_handler(load: Callable[[], DashboardData]) -> Handler:
    """An aiohttp handler answering ``/dashboard/`` and ``/dashboard/{page}.html``."""

    async def handle(request: web.Request) -> web.StreamResponse:
        page = request.match_info.get("page") or "index"
        if page not in PAGES:
            raise web.HTTPNotFound(
                text=f"no dashboard page {page!r}; pages: {', '.join(PAGES)}",
            )
        data = await asyncio.to_thread(load)
        html = await asyncio.to_thread(lambda: render_dashboard(data)[page])
        return web.Response(
            text=html,
            content_type="text/html",
            headers={"Cache-Control": "no-store"},
        )

    return handle


def add_dashboard_routes(app: web.Application, load: Callable[[], DashboardData]) -> None:
    """Mount the dashboard at ``/dashboard`` on ``app``."""

    async def redirect(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(f"{PREFIX}/")

    handle = dashboard_handler(load)
    app.router.add_get(PREFIX, redirect)
    app.router.add_get(f"{PREFIX}/", handle)
    app.router.add_get(PREFIX + "/{page}.html", handle)
