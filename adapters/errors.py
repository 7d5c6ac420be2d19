"""The project's exception tree, documented in one place.

    MlopsError
    ├── SettingsError         configuration is missing or malformed (start-up stops)
    ├── BadInputError         the input itself is wrong; never retried, quarantined or answered 4xx
    ├── NotFoundError         a named thing (blob, job, model version) does not exist
    ├── ConflictError         the thing exists already / precondition failed (idempotency guard)
    ├── AccessDeniedError     our identity lacks an Azure role (401/403); fix the deployment
    └── TransientError        the outside world failed in a way worth retrying

Adapters translate SDK exceptions into these with ``raise ... from exc`` so callers
never depend on an SDK's error types.
"""

from __future__ import annotations


class MlopsError(Exception):
    """Base class of every error this project raises on purpose."""


class SettingsError(MlopsError):
    """One or more settings are missing or malformed; the message lists all of them."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} setting problem(s):\n{lines}")


class BadInputError(MlopsError):
    """The caller's input cannot be processed; retrying will not help."""

    def __init__(self, message: str, *, code: str = "bad_input") -> None:
        self.code = code
        super().__init__(message)


class NotFoundError(MlopsError):
    """The requested resource does not exist."""


class ConflictError(MlopsError):
    """The resource exists already or changed underneath us."""


class AccessDeniedError(MlopsError):
    """The service refused the app's identity (401/403, or no token could be had).

    A configuration error of the deployment, never retried: the message names the Azure role
    the identity needs (``role``) and where the infrastructure assigns it.
    """

    def __init__(self, message: str, *, role: str) -> None:
        self.role = role
        super().__init__(message)


class TransientError(MlopsError):
    """A failure of the outside world that a retry may fix.

    The message always starts with ``transient:``: an activity's error crosses the durable
    boundary as text, and that prefix is how an orchestrator knows a retry may help.
    """

    MARKER = "transient:"

    def __init__(self, message: str) -> None:
        text = str(message)
        super().__init__(text if text.startswith(self.MARKER) else f"{self.MARKER} {text}")
