"""How the Azure adapters call an Azure SDK: one retry policy, one translation of its errors.

``RetrySettings`` configure azure-core's own retry policy, which every SDK client the adapters
build gets as ``retry_policy``: throttling (429) and service errors (408, 5xx) are retried a
few times inside one call, honouring the service's ``Retry-After`` up to ``retry_after_max``
seconds, so a throttled call never sleeps for minutes inside a function. What is still failing
after that reaches ``call_azure``, which raises the project's errors:

- 404 → ``NotFoundError``;
- 401, 403, a credential that cannot get a token → ``AccessDeniedError`` naming the Azure role
  the app's identity needs (a deployment problem: retrying cannot help);
- 408, 429, 5xx, connection failures → ``TransientError`` (the orchestrator retries);
- 409 → ``ConflictError``; any other 4xx → ``BadInputError``.

Iterating a pager (``models.list``) issues requests too: do it inside ``call_azure``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from adapters.errors import (
    AccessDeniedError,
    BadInputError,
    ConflictError,
    MlopsError,
    NotFoundError,
    TransientError,
)

if TYPE_CHECKING:
    from azure.core.pipeline.policies import RetryPolicy

T = TypeVar("T")


@dataclass(frozen=True)
class RetrySettings:
    """Retries inside one SDK call (seconds): ``total`` attempts after the first, exponential
    back-off ``backoff_factor * 2**n`` capped at ``backoff_max``, and a server's
    ``Retry-After`` honoured up to ``retry_after_max``."""

    total: int = 3
    backoff_factor: float = 0.8
    backoff_max: float = 20.0
    retry_after_max: float = 30.0

    def policy(self) -> RetryPolicy[Any, Any]:
        """azure-core's ``RetryPolicy`` with these settings and the capped ``Retry-After``."""
        from azure.core.pipeline.policies import RetryPolicy

        cap = self.retry_after_max

        class CappedRetryPolicy(RetryPolicy[Any, Any]):
            def get_retry_after(self, response: Any) -> float | None:
                wait = super().get_retry_after(response)
                return None if wait is None else min(wait, cap)

        return CappedRetryPolicy(
            retry_total=self.total,
            retry_connect=self.total,
            retry_read=self.total,
            retry_status=self.total,
            retry_backoff_factor=self.backoff_factor,
            retry_backoff_max=self.backoff_max,
        )


@dataclass(frozen=True)
class AzureService:
    """Who is called and which role the app's identity needs there (for error messages)."""

    name: str
    role: str
    grant: str


def call_azure(action: Callable[[], T], what: str, service: AzureService) -> T:
    """Run ``action`` (SDK calls) and translate the SDK's exceptions into ours.

    An SDK may wrap an azure-core error in its own exceptions (azure-ai-ml does, for blob
    transfers and for assets it cannot find): the error they were raised from is what is
    translated. Our own errors and anything else propagate unchanged.
    """

    try:
        return action()
    except MlopsError:
        raise
    except Exception as exc:
        for link in _chain(exc):
            ours = translate(link, what, service)
            if ours is not None:
                raise ours from exc
        raise


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from or while handling, outermost first."""
    out: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in out):
        out.append(current)
        current = current.__cause__ or current.__context__
    return out


def translate(exc: BaseException, what: str, service: AzureService) -> Exception | None:
    """Our error for an azure-core error ``exc`` raised while doing ``what``; ``None`` for
    anything that is not a request failing (an SDK's own validation errors, say)."""
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ResourceExistsError,
        ResourceNotFoundError,
        ServiceRequestError,
        ServiceResponseError,
    )

    if isinstance(exc, ResourceNotFoundError):
        return NotFoundError(f"{what}: {service.name} has no such thing")
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return TransientError(f"{service.name} unreachable ({what}): {exc}")
    if isinstance(exc, ClientAuthenticationError):
        return access_denied(service, what, exc)
    if isinstance(exc, ResourceExistsError):
        return ConflictError(f"{what}: {service.name} says it exists already")
    if not isinstance(exc, HttpResponseError):
        return None
    status = exc.status_code or 0
    message = exc.message
    if status == 404:
        return NotFoundError(f"{what}: {service.name} has no such thing")
    if status in (401, 403):
        return access_denied(service, what, exc)
    if status in (0, 408, 429) or status >= 500:
        return TransientError(f"{service.name} answered {status or 'no status'} ({what})")
    if status == 409:
        return ConflictError(f"{what}: {service.name} answered 409: {message}")
    return BadInputError(f"{service.name} rejected {what}: {message}")


def access_denied(service: AzureService, what: str, exc: Exception) -> AccessDeniedError:
    """A message that says what was refused, why, and which role fixes it."""
    status = getattr(exc, "status_code", None)
    code = getattr(getattr(exc, "error", None), "code", None)
    text = str(getattr(exc, "message", "") or exc)
    action = re.search(r"perform action '([^']+)'", text)
    if action:
        why = f"it has no permission for {action.group(1)}"
    elif status == 401:
        why = "the service did not accept its token"
    elif status is None:
        lines = text.strip().splitlines()
        why = f"no token could be had ({lines[0] if lines else type(exc).__name__})"
    else:
        why = "the service refused it"
    answer = f" [{status}{' ' + code if code else ''}]" if status else ""
    return AccessDeniedError(
        f"the app's identity may not {what} in {service.name}: {why}{answer}. "
        f"Give it the '{service.role}' role there ({service.grant}).",
        role=service.role,
    )
