"""The Azure adapters' retry policy and error translation, on azure-core's own objects.

What the service answers (429, 503, 401, 403, 404 …) is covered through the real SDK clients
in tests/integration (``-m azure_http``); these are the cases no HTTP answer produces."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from azure.core.exceptions import ServiceRequestError
from azure.identity import CredentialUnavailableError

from adapters.azure_calls import AzureService, RetrySettings, call_azure
from adapters.errors import AccessDeniedError, NotFoundError, TransientError

SERVICE = AzureService("the workspace", role="Reader", grant="see infra")


def _response(headers: dict[str, str]) -> SimpleNamespace:
    return SimpleNamespace(http_response=SimpleNamespace(headers=headers))


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"Retry-After": "600"}, 2.5),
        ({"retry-after": "1"}, 1.0),
        ({"retry-after-ms": "400000"}, 2.5),
        ({}, None),
    ],
)
def test_retry_after_is_honoured_up_to_the_ceiling(
    headers: dict[str, str], wait: float | None
) -> None:
    policy = RetrySettings(total=4, retry_after_max=2.5).policy()
    assert policy.get_retry_after(_response(headers)) == wait  # type: ignore[arg-type]
    assert policy.total_retries == 4


def test_a_credential_without_an_identity_is_an_access_problem_naming_the_role() -> None:
    def no_identity() -> None:
        raise CredentialUnavailableError("ManagedIdentityCredential: no managed identity")

    with pytest.raises(AccessDeniedError, match="no token could be had") as caught:
        call_azure(no_identity, "read job x", SERVICE)
    assert caught.value.role == "Reader"
    assert "'Reader' role" in str(caught.value)


def test_an_sdk_error_wrapping_a_transport_failure_is_transient() -> None:
    class SdkError(Exception):
        pass

    def wrapped() -> None:
        try:
            raise ServiceRequestError("connection refused")
        except ServiceRequestError as exc:
            raise SdkError("Saving blob was unsuccessful") from exc

    with pytest.raises(TransientError, match="unreachable"):
        call_azure(wrapped, "download x", SERVICE)


def test_our_own_errors_and_unrelated_ones_pass_through() -> None:
    def ours() -> None:
        raise NotFoundError("no such output")

    def unrelated() -> None:
        raise KeyError("k")

    with pytest.raises(NotFoundError, match="no such output"):
        call_azure(ours, "x", SERVICE)
    with pytest.raises(KeyError):
        call_azure(unrelated, "x", SERVICE)
