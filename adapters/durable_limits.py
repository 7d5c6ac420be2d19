"""Limits Azure Durable Functions (Azure Storage backend) puts on ids, status and payloads (pure).

The app builds instance ids and custom status itself; the local Durable engine enforces the
same rules, so a local run fails where Azure would. Each figure names where it comes from:

* Instance ids — Durable Functions extension v2, ``DurableClient.StartNewAsync``
  (Azure/azure-functions-durable-extension, ``ContextImplementations/DurableClient.cs``): an id
  must not start with ``@``, must not contain ``/``, ``\\``, ``#``, ``?`` or a control
  character (``char.IsControl``: U+0000–U+001F, U+007F–U+009F), and must not exceed 256
  characters. The same characters are what Azure Table storage refuses in a ``PartitionKey``,
  which the Azure Storage backend uses for the instance id ("Characters disallowed in key
  fields", learn.microsoft.com/rest/api/storageservices/understanding-the-table-service-data-model).
  Sub-orchestration ids are only checked for ``@`` and equality with the parent by the
  extension, but they land in the same table keys, so the characters are refused there too;
  the length cap there is the table key's 1 KiB (512 UTF-16 code units), not 256.
* Custom status — ``SetCustomStatus`` serialises the value and fails the orchestration when
  ``(int)(UTF-16 bytes / 1024) > 16`` ("The UTF-16 size of the JSON-serialized payload must
  not exceed 16 KB", ``MessagePayloadDataConverter.Serialize``; documented as "limited to 16 KB
  of UTF-16 JSON text"). Because of the truncating division, 16 KB is the documented figure
  and anything up to 17,407 bytes still passes; this module reproduces the exact check.
* Payloads — the Azure Storage backend has no hard cap on orchestration or activity inputs and
  outputs: queue messages over 45 KB (UTF-8, ``MessageManager.MaxStorageQueuePayloadSizeInBytes``)
  and table properties over 60 KB (``AzureTableTrackingStore.MaxTablePropertySizeInBytes``) are
  gzipped into the ``<hub>-largemessages`` blob container (Azure/durabletask,
  ``src/DurableTask.AzureStorage``). That works, but every read of such a payload is an extra
  blob download and history replays carry it, so the engine warns rather than fails.
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass
from typing import Any

from adapters.errors import BadInputError

MAX_INSTANCE_ID_LENGTH = 256
MAX_TABLE_KEY_UTF16_UNITS = 512  # 1 KiB of UTF-16
FORBIDDEN_ID_CHARACTERS = frozenset("/\\#?")
MAX_CUSTOM_STATUS_KB = 16
CUSTOM_STATUS_FAIL_BYTES = (MAX_CUSTOM_STATUS_KB + 1) * 1024  # first size the extension refuses
LARGE_MESSAGE_BYTES = 45 * 1024
LARGE_TABLE_PROPERTY_BYTES = 60 * 1024


def _is_control(char: str) -> bool:
    # .NET's char.IsControl is exactly the Unicode "Cc" category: U+0000–U+001F, U+007F–U+009F.
    return unicodedata.category(char) == "Cc"


def _utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def instance_id_problem(instance_id: str, *, sub_orchestration: bool = False) -> str | None:
    """Why Azure would refuse ``instance_id``, or ``None`` when it is acceptable.

    ``sub_orchestration`` applies the table-key length (1 KiB) instead of the client's 256
    characters, since the extension checks only the latter on client starts.
    """
    if not isinstance(instance_id, str) or instance_id == "":
        return "an instance id must be a non-empty string"
    if instance_id.startswith("@"):
        return f"instance id {instance_id[:80]!r} starts with '@' (reserved for entities)"
    bad = sorted({c for c in instance_id if c in FORBIDDEN_ID_CHARACTERS or _is_control(c)})
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        return (
            f"instance id {instance_id[:80]!r} contains {shown}; Durable Functions ids must not "
            "contain /, \\, #, ? or control characters"
        )
    length = _utf16_units(instance_id)
    if sub_orchestration:
        if length > MAX_TABLE_KEY_UTF16_UNITS:
            return (
                f"sub-orchestration instance id is {length} characters; the Azure Storage "
                f"backend keeps it in a table key of at most {MAX_TABLE_KEY_UTF16_UNITS}"
            )
    elif length > MAX_INSTANCE_ID_LENGTH:
        return (
            f"instance id is {length} characters; Durable Functions allows at most "
            f"{MAX_INSTANCE_ID_LENGTH}"
        )
    return None


def check_instance_id(instance_id: str, *, sub_orchestration: bool = False) -> str:
    """Return ``instance_id`` when Azure accepts it; raise ``BadInputError`` naming the rule."""
    problem = instance_id_problem(instance_id, sub_orchestration=sub_orchestration)
    if problem is not None:
        raise BadInputError(problem, code="bad_instance_id")
    return instance_id


def compact_json(value: Any) -> str:
    """The value as the extension re-serialises it: no spaces, non-ASCII kept as is."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


@dataclass(frozen=True)
class CustomStatusSize:
    """The UTF-16 size Azure measures for a custom status, and whether it passes."""

    utf16_bytes: int

    @property
    def kilobytes(self) -> int:
        """Whole KB, truncated, as the extension reports it."""
        return self.utf16_bytes // 1024

    @property
    def accepted(self) -> bool:
        return self.kilobytes <= MAX_CUSTOM_STATUS_KB

    def refusal(self) -> str:
        """The extension's own wording for a refused status."""
        return (
            f"The UTF-16 size of the JSON-serialized payload must not exceed "
            f"{MAX_CUSTOM_STATUS_KB} KB. The current payload size is {self.kilobytes} KB."
        )


def custom_status_size(value: Any) -> CustomStatusSize:
    """Measure ``value`` the way ``SetCustomStatus`` does (compact JSON, UTF-16)."""
    return CustomStatusSize(len(compact_json(value).encode("utf-16-le")))


def payload_bytes(serialised: str | None) -> int:
    """UTF-8 size of a serialised payload (what the backend's 45 KB queue check counts)."""
    return 0 if serialised is None else len(serialised.encode("utf-8"))


def large_payload_note(what: str, size: int) -> str | None:
    """A warning for a payload the Azure Storage backend would move to a blob, else ``None``."""
    if size <= LARGE_MESSAGE_BYTES:
        return None
    return (
        f"{what} is {size / 1024:.0f} KB: the Azure Storage backend stores payloads over "
        f"{LARGE_MESSAGE_BYTES // 1024} KB as gzipped blobs (an extra blob round trip on every "
        "read, and the history replays it); pass a reference to a blob instead"
    )
