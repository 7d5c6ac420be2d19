from __future__ import annotations

import pytest

from adapters.alerts import AlertSettings, build_notifier
from adapters.errors import BadInputError, SettingsError, TransientError
from adapters.notify import AcsEmailNotifier, Email, InMemoryNotifier, SmtpNotifier, build_mime
from adapters.settings import load_settings
from local.processes import free_port

EMAIL = Email(
    "alert-evt/1",
    "ERROR east: train step failed",
    "text body\n",
    "<p>html</p>",
    {"X-MLOps-Alert-Id": "evt/1"},
)


def test_mime_has_text_and_html_alternatives_and_a_stable_message_id() -> None:
    msg = build_mime(EMAIL, sender="a@example.com", recipients=["b@example.com", "c@example.com"])
    assert msg["To"] == "b@example.com, c@example.com"
    assert msg["Message-ID"] == "<alert-evt_1@mlops-alerts>"
    assert msg["X-MLOps-Alert-Id"] == "evt/1"
    assert msg.get_content_type() == "multipart/alternative"
    text, html = msg.get_body(("plain",)), msg.get_body(("html",))
    assert text is not None and text.get_content() == "text body\n"
    assert html is not None and "<p>html</p>" in html.get_content()
    assert (
        build_mime(EMAIL, sender="a@x.io", recipients=["b@x.io"])["Message-ID"] == msg["Message-ID"]
    )


def test_email_round_trips_and_rejects_multi_line_subjects() -> None:
    assert Email.from_json(EMAIL.to_json()) == EMAIL
    with pytest.raises(ValueError, match="one line"):
        Email("id", "a\r\nBcc: x@evil.example", "t")
    with pytest.raises(ValueError, match="message_id"):
        Email(" ", "s", "t")


def test_unreachable_smtp_server_is_a_transient_error() -> None:
    n = SmtpNotifier(
        "127.0.0.1", free_port(), sender="a@example.com", recipients=["b@example.com"], timeout=2
    )
    with pytest.raises(TransientError, match="unreachable"):
        n.send(EMAIL)


def test_notifiers_refuse_bad_addresses_up_front() -> None:
    with pytest.raises(BadInputError):
        SmtpNotifier("h", 25, sender="nobody", recipients=["b@example.com"])
    with pytest.raises(BadInputError):
        AcsEmailNotifier("https://x.communication.azure.com", sender="a@x.io", recipients=[])


def test_in_memory_notifier_records_and_fails_on_request() -> None:
    n = InMemoryNotifier()
    n.fail_next(1)
    with pytest.raises(TransientError):
        n.send(EMAIL)
    n.send(EMAIL)
    assert n.sent == [EMAIL] and n.attempts == 2


CONN = "UseDevelopmentStorage=true"


def test_alert_settings_are_parsed_and_validated_with_the_other_settings() -> None:
    s = load_settings(
        {
            "AzureWebJobsStorage": CONN,
            "MLOPS_DATALAKE": CONN,
            "MLOPS_ALERT_TO": "ops@contoso.com, oncall@contoso.com",
            "MLOPS_SMTP_PORT": "2525",
            "MLOPS_SMTP_STARTTLS": "true",
        }
    )
    a = AlertSettings.from_settings(s)
    assert a.recipients == ("ops@contoso.com", "oncall@contoso.com")
    assert (a.smtp_port, a.smtp_starttls, a.window_minutes, a.container) == (2525, True, 60, "ops")
    smtp = build_notifier(a, smtp_port=4000)
    assert isinstance(smtp, SmtpNotifier) and smtp.port == 4000
    acs = build_notifier(
        AlertSettings.from_env(
            {"MLOPS_ALERT_TRANSPORT": "acs", "MLOPS_ACS_ENDPOINT": "https://x.azure.com"}
        )
    )
    assert isinstance(acs, AcsEmailNotifier) and acs.endpoint == "https://x.azure.com"
    with pytest.raises(SettingsError) as info:
        load_settings(
            {
                "AzureWebJobsStorage": CONN,
                "MLOPS_DATALAKE": CONN,
                "MLOPS_ALERT_TO": "not-an-address",
                "MLOPS_ALERT_FROM": "a@x.io,b@x.io",
                "MLOPS_ALERT_MAX_PER_WINDOW": "0",
                "MLOPS_SMTP_STARTTLS": "maybe",
            }
        )
    joined = "\n".join(info.value.problems)
    for key in (
        "MLOPS_ALERT_TO",
        "MLOPS_ALERT_FROM",
        "MLOPS_ALERT_MAX_PER_WINDOW",
        "MLOPS_SMTP_STARTTLS",
    ):
        assert key in joined
