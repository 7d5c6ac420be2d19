"""AcsEmailNotifier through the real ``azure-communication-email`` client and azure-core
pipeline, against a loopback stand-in of the ACS Email REST API (``azure_standin/acs.py``):
HTTPS, a bearer token for the ACS audience (what a managed identity gets in Azure), the send
operation and its long-running-operation polling through ``Operation-Location``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from adapters.azure_calls import RetrySettings
from adapters.errors import AccessDeniedError, BadInputError, TransientError
from adapters.notify import ACS_OPERATION_NAMESPACE, AcsEmailNotifier, Email
from tests.integration.azure_standin.acs import API_VERSION, AcsStandIn
from tests.integration.azure_standin.credentials import StaticTokenCredential
from tests.integration.azure_standin.http import StandInServer
from tests.integration.azure_standin.tls import StandInCertificate
from tests.integration.conftest import FAST_RETRY

pytestmark = [pytest.mark.integration, pytest.mark.azure_http]

EMAIL = Email(
    "alert-evt-1",
    "ERROR east: train step failed",
    "plain body",
    "<p>html</p>",
    {"X-MLOps-Alert-Id": "evt-1"},
)


@pytest.fixture
def acs(standin_certificate: StandInCertificate) -> Iterator[AcsStandIn]:
    app = AcsStandIn()
    server = StandInServer(app, context=standin_certificate.server_context()).start()
    app.url = server.url
    try:
        yield app
    finally:
        server.stop()
    assert not app.unrouted, app.unrouted


def notifier(
    acs: AcsStandIn, cert: StandInCertificate, *, wait_seconds: float = 10
) -> AcsEmailNotifier:
    return AcsEmailNotifier(
        acs.url,
        sender="DoNotReply@mlops.example.com",
        recipients=["ops@example.com", "oncall@example.com"],
        credential=StaticTokenCredential(),
        wait_seconds=wait_seconds,
        retry=FAST_RETRY,
        polling_interval=0.05,
        connection_verify=str(cert.cert_file),
    )


def test_send_posts_the_message_and_polls_its_operation_to_success(
    acs: AcsStandIn, standin_certificate: StandInCertificate
) -> None:
    acs.polls_until_done = 2
    notifier(acs, standin_certificate).send(EMAIL)
    assert acs.operations() == ["emails.send", "emails.getSendResult", "emails.getSendResult"]
    assert {s.api_version for s in acs.served} == {API_VERSION}
    assert not acs.auth_failures  # every request carried a token for the ACS audience
    (request,) = acs.sends
    body = request.json()
    assert body["senderAddress"] == "DoNotReply@mlops.example.com"
    assert [r["address"] for r in body["recipients"]["to"]] == [
        "ops@example.com",
        "oncall@example.com",
    ]
    assert body["content"] == {
        "subject": EMAIL.subject,
        "plainText": "plain body",
        "html": "<p>html</p>",
    }
    assert body["headers"] == {"X-MLOps-Alert-Id": "evt-1"}
    expected_id = str(uuid.uuid5(ACS_OPERATION_NAMESPACE, EMAIL.message_id))
    assert request.header("Operation-Id") == expected_id
    assert acs.operations_by_id[expected_id].status == "Succeeded"


def test_the_same_email_reuses_its_operation_id(
    acs: AcsStandIn, standin_certificate: StandInCertificate
) -> None:
    n = notifier(acs, standin_certificate)
    n.send(EMAIL)
    n.send(EMAIL)
    n.send(Email("alert-evt-2", "s", "t"))
    ids = [r.header("Operation-Id") for r in acs.sends]
    assert ids[0] == ids[1] != ids[2]


@pytest.mark.parametrize("status", [429, 503])
def test_throttling_and_outages_are_retried_then_transient(
    acs: AcsStandIn, standin_certificate: StandInCertificate, status: int
) -> None:
    # A minute's Retry-After: honoured only up to the policy's (test-sized) ceiling.
    acs.fail("emails.send", status, times=3, headers={"Retry-After": "60"})
    with pytest.raises(TransientError, match=str(status)):
        notifier(acs, standin_certificate).send(EMAIL)
    assert acs.count("emails.send") == 3  # the first try and two retries
    acs.fail("emails.send", status, times=1, headers={"Retry-After": "60"})
    notifier(acs, standin_certificate).send(EMAIL)  # one hiccup is absorbed


def test_a_rejected_message_is_bad_input_and_not_retried(
    acs: AcsStandIn, standin_certificate: StandInCertificate
) -> None:
    acs.fail("emails.send", 400)
    with pytest.raises(BadInputError, match="rejected"):
        notifier(acs, standin_certificate).send(EMAIL)
    assert acs.count("emails.send") == 1


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_identity_names_the_role_it_needs(
    acs: AcsStandIn, standin_certificate: StandInCertificate, status: int
) -> None:
    acs.fail("emails.send", status)
    with pytest.raises(AccessDeniedError, match="Contributor") as caught:
        notifier(acs, standin_certificate).send(EMAIL)
    assert "Communication Services" in str(caught.value)


def test_a_token_for_another_audience_is_refused(
    acs: AcsStandIn, standin_certificate: StandInCertificate
) -> None:
    class WrongAudience(StaticTokenCredential):
        def get_token(self, *scopes: str, **kwargs: object) -> object:  # type: ignore[override]
            return super().get_token("https://management.azure.com/.default")

    n = AcsEmailNotifier(
        acs.url,
        sender="a@example.com",
        recipients=["b@example.com"],
        credential=WrongAudience(),  # type: ignore[arg-type]
        retry=FAST_RETRY,
        connection_verify=str(standin_certificate.cert_file),
    )
    with pytest.raises(AccessDeniedError):
        n.send(EMAIL)
    assert acs.auth_failures
    acs.auth_failures.clear()


def test_a_failed_send_operation_is_not_reported_as_delivered(
    acs: AcsStandIn, standin_certificate: StandInCertificate
) -> None:
    acs.outcome = "Failed"
    acs.error = {"code": "EmailDropped", "message": "Email was dropped after several attempts."}
    with pytest.raises(TransientError, match="EmailDropped: Email was dropped"):
        notifier(acs, standin_certificate).send(EMAIL)


def test_a_send_still_running_after_the_wait_counts_as_accepted(
    acs: AcsStandIn, standin_certificate: StandInCertificate
) -> None:
    acs.retry_after = 30  # the service asks for patience; the adapter does not wait that long
    acs.polls_until_done = 100
    notifier(acs, standin_certificate, wait_seconds=0.2).send(EMAIL)
    assert acs.operations()[0] == "emails.send"


def test_unreachable_service_is_transient(
    acs: AcsStandIn, standin_certificate: StandInCertificate
) -> None:
    server = StandInServer(AcsStandIn(), context=standin_certificate.server_context())
    url = server.url
    server.server_close()  # nothing listens there any more
    n = AcsEmailNotifier(
        url,
        sender="a@example.com",
        recipients=["b@example.com"],
        credential=StaticTokenCredential(),
        retry=RetrySettings(total=0),
        connection_verify=str(standin_certificate.cert_file),
    )
    with pytest.raises(TransientError, match="unreachable"):
        n.send(EMAIL)
