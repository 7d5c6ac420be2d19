"""HTTP: the model-health dashboard, served by the app itself (locally and in Azure).

``GET /api/dashboard/`` is the overview; ``GET /api/dashboard/{page}.html`` the others
(``training``, ``monitoring``, ``scoring``). Function-level key: pass it as ``?code=`` (the
pages' links carry it on) or the ``x-functions-key`` header. Each request reads the summary
the app keeps current (four small documents) and renders one page: the work does not grow
with the registry or the job history.
"""

from __future__ import annotations

import logging
from urllib.parse import quote, urlsplit

import azure.functions as func

from triggers.http_common import error_response

log = logging.getLogger(__name__)
bp = func.Blueprint()

ROUTE = "dashboard"
# Inline styles and inline SVG only: nothing else may load, run or frame the pages.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _page_name(raw: str) -> str:
    name = raw.strip("/").removesuffix(".html")
    return name or "index"


def _links(req: func.HttpRequest) -> tuple[str, str]:
    """(path of the dashboard route as the caller reached it, query to carry on)."""
    path = urlsplit(req.url).path
    marker = f"/{ROUTE}"
    base = path[: path.index(marker) + len(marker)] if marker in path else f"/api/{ROUTE}"
    code = req.params.get("code")
    return base, f"?code={quote(code, safe='')}" if code else ""


@bp.route(route="dashboard/{page?}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def on_dashboard_get(req: func.HttpRequest) -> func.HttpResponse:
    from dashboard.pages import PAGES, render_page
    from dashboard.summary import load_dashboard

    page = _page_name(req.route_params.get("page") or "")
    if page not in PAGES:
        return error_response(
            404, "not_found", f"no dashboard page {page!r}; pages: {', '.join(PAGES)}"
        )
    from composition import get_services

    services = get_services()
    if services.summary is None:
        return error_response(503, "not_configured", "the dashboard's summary store is not set up")
    data = load_dashboard(
        services.summary, stale_after_days=services.settings.automation.stale_after_days
    )
    base, query = _links(req)
    html = render_page(data, page, lambda p: f"{base}/{'' if p == 'index' else p + '.html'}"
                       f"{query}")  # fmt: skip
    log.info("dashboard page %s rendered (%d problems)", page, len(data.problems))
    return func.HttpResponse(
        html, status_code=200, mimetype="text/html", charset="utf-8", headers=SECURITY_HEADERS
    )
