"""The rehearsal's own logic, checked without running it: matching operations to the
permission matrix, and reading the SDK's REST bodies back into a runnable job."""

from __future__ import annotations

import pytest

from tests.infra.permissions import Permission
from tests.rehearsal.permissions import Observed, granted, ungranted
from tests.rehearsal.workspace import JobRefused, arm_tail, datastore_target

BLOBS = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs"


def row(identity: str, scope: str, *actions: str) -> Permission:
    return Permission("op", "caller", actions, identity, "role", scope, "file#symbol")


def seen(identity: str, scope: str, action: str) -> Observed:
    return Observed("storage.blob", "Get Blob", "GET", "/{account}/{container}/{blob}", action,
                    identity, scope)  # fmt: skip


def test_a_row_grants_its_identity_its_actions_on_its_scope_and_below() -> None:
    rows = [row("app", "data-lake", f"{BLOBS}/read"), row("aml-compute", "data-lake/conditioned",
                                                          f"{BLOBS}/*")]  # fmt: skip
    assert granted(seen("app", "data-lake/raw", f"{BLOBS}/read"), rows)
    assert granted(seen("app", "data-lake", f"{BLOBS}/read"), rows)
    assert granted(seen("aml-compute", "data-lake/conditioned", f"{BLOBS}/read"), rows)
    # Another identity, action, or a scope the row does not cover: not granted.
    assert not granted(seen("adf", "data-lake/raw", f"{BLOBS}/read"), rows)
    assert not granted(seen("app", "data-lake/raw", f"{BLOBS}/write"), rows)
    assert not granted(seen("aml-compute", "data-lake/raw", f"{BLOBS}/read"), rows)
    assert not granted(seen("app", "host-storage/x", f"{BLOBS}/read"), rows)
    missing = ungranted([seen("app", "data-lake/raw", f"{BLOBS}/delete")], rows)
    assert [m.action for m in missing] == [f"{BLOBS}/delete"]


def test_rest_ids_and_datastore_uris_are_read_back() -> None:
    ws = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices" + (
        "/workspaces/w"
    )
    assert arm_tail(f"azureml:{ws}/codes/abc/versions/1", "codes") == ("abc", "1")
    assert arm_tail(f"{ws}/data/shipments/versions/v9", "data") == ("shipments", "v9")
    assert datastore_target("azureml://datastores/lake/paths/shipments/v1/") == (
        "lake", "shipments/v1/",
    )  # fmt: skip
    assert datastore_target(
        "azureml://subscriptions/s/resourcegroups/rg/workspaces/w/datastores/lake/paths/a/"
    ) == ("lake", "a/")
    with pytest.raises(JobRefused):
        arm_tail(f"{ws}/jobs/x", "codes")
    with pytest.raises(JobRefused):
        datastore_target("https://example.com/data")
