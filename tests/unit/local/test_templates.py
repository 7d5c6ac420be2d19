from __future__ import annotations

import pytest

from local.hosting.templates import BlobPathTemplate, RouteTemplate, TemplateError


@pytest.mark.parametrize(
    ("path", "container", "blob", "expected"),
    [
        ("raw/{source}/{name}", "raw", "a/b/c.csv", {"source": "a/b", "name": "c.csv"}),
        ("raw/{source}/{name}", "raw", "shipments/x.csv", {"source": "shipments", "name": "x.csv"}),
        ("raw/{name}", "raw", "deep/er/file.txt", {"name": "deep/er/file.txt"}),
        ("raw/in/{name}.{ext}", "raw", "in/a.b.csv", {"name": "a.b", "ext": "csv"}),
        ("raw/fixed.csv", "raw", "fixed.csv", {}),
        ("raw/{source}/{name}", "raw", "flat.csv", None),
        ("raw/{source}/{name}", "other", "a/b.csv", None),
        ("raw/in/{name}", "raw", "out/a.csv", None),
    ],
)
def test_blob_templates_match_like_the_host(
    path: str, container: str, blob: str, expected: dict[str, str] | None
) -> None:
    assert BlobPathTemplate.parse(path).match(container, blob) == expected


def test_blob_template_prefix_is_the_literal_part() -> None:
    assert BlobPathTemplate.parse("raw/in/{name}").prefix == "in/"
    assert BlobPathTemplate.parse("raw/{name}").prefix == ""


@pytest.mark.parametrize("bad", ["raw", "{c}/x", "raw/{a}/{a}", "raw/{not valid}", "raw/"])
def test_bad_blob_templates_are_rejected(bad: str) -> None:
    with pytest.raises(TemplateError):
        BlobPathTemplate.parse(bad)


@pytest.mark.parametrize(
    ("route", "path", "expected"),
    [
        ("orchestrations/{name}", "orchestrations/train", {"name": "train"}),
        ("orchestrations/{name}", "orchestrations/train/", {"name": "train"}),
        ("orchestrations/{name}", "ORCHESTRATIONS/train", {"name": "train"}),
        ("orchestrations/{name}", "orchestrations", None),
        ("orchestrations/{name}", "orchestrations/a/b", None),
        ("items/{id:int}", "items/42", {"id": "42"}),
        ("items/{id:int}", "items/abc", None),
        ("items/{id?}", "items", {}),
        ("items/{id?}", "items/7", {"id": "7"}),
        ("files/{*rest}", "files/a/b/c", {"rest": "a/b/c"}),
        ("health", "health", {}),
    ],
)
def test_routes_match(route: str, path: str, expected: dict[str, str] | None) -> None:
    assert RouteTemplate.parse(route).match(path) == expected


@pytest.mark.parametrize("bad", ["a/{*rest}/b", "a/{x:nope}", "a/{x}/{x}", "a/b{c"])
def test_bad_routes_are_rejected(bad: str) -> None:
    with pytest.raises(TemplateError):
        RouteTemplate.parse(bad)
