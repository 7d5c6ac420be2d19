"""The dashboard function as the worker calls it: real ``HttpRequest`` objects, a fake store."""

from __future__ import annotations

from collections.abc import Iterator

import azure.functions as func
import pytest

from adapters.datalake import InMemoryDataLake
from adapters.settings import load_settings
from adapters.summary import InMemorySummaryStore
from composition import Services, use_services
from dashboard.summary import record_model
from tests.unit.dashboard.sample import sample_data
from triggers.dashboard import on_dashboard_get


@pytest.fixture
def store() -> Iterator[InMemorySummaryStore]:
    settings = load_settings(
        {"AzureWebJobsStorage": "UseDevelopmentStorage=true",
         "MLOPS_DATALAKE": "UseDevelopmentStorage=true"}
    )  # fmt: skip
    summary = InMemorySummaryStore()
    use_services(Services(settings=settings, data_lake=InMemoryDataLake(), summary=summary))
    try:
        yield summary
    finally:
        use_services(None)


def get(url: str, page: str | None, code: str | None = None) -> func.HttpResponse:
    params = {"code": code} if code is not None else {}
    request = func.HttpRequest(
        "GET", url, params=params, route_params={"page": page} if page else {}, body=b""
    )
    response: func.HttpResponse = on_dashboard_get.build().get_user_function()(request)
    return response


def test_pages_link_under_the_route_they_were_reached_by_carrying_the_key(
    store: InMemorySummaryStore,
) -> None:
    for model in sample_data().models:
        record_model(store, model)
    key = 'k"<x>&y=1'
    response = get("https://app.example.net/api/dashboard/training.html", "training.html", key)
    assert response.status_code == 200 and response.mimetype == "text/html"
    html = response.get_body().decode()
    assert "north/large/fast" in html
    encoded = "code=k%22%3Cx%3E%26y%3D1"
    assert f'href="/api/dashboard/?{encoded}"' in html
    assert f'href="/api/dashboard/scoring.html?{encoded}" ' not in html  # only the nav's own form
    assert f'href="/api/dashboard/scoring.html?{encoded}"' in html
    assert "<x>" not in html, "the key is never reflected unescaped"
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["Cache-Control"] == "no-store"


def test_the_overview_answers_with_and_without_a_trailing_page(store: InMemorySummaryStore) -> None:
    for page in (None, "", "index.html"):
        response = get("http://127.0.0.1:7071/api/dashboard", page)
        assert response.status_code == 200
        assert "No data recorded yet" in response.get_body().decode()


def test_an_unknown_page_is_a_json_404(store: InMemorySummaryStore) -> None:
    response = get("http://127.0.0.1:7071/api/dashboard/x.html", "../secrets.html")
    assert response.status_code == 404
    assert b"no dashboard page" in response.get_body()


def test_without_a_summary_store_the_answer_is_503() -> None:
    settings = load_settings(
        {"AzureWebJobsStorage": "UseDevelopmentStorage=true",
         "MLOPS_DATALAKE": "UseDevelopmentStorage=true"}
    )  # fmt: skip
    use_services(Services(settings=settings, data_lake=InMemoryDataLake()))
    try:
        assert get("http://h/api/dashboard/", None).status_code == 503
    finally:
        use_services(None)
