"""Payloads in the Durable Functions wire format, for the Durable Task engine.

The local engine stores and hands over payloads exactly as Durable Functions Python does:
builtins as plain JSON, custom objects with the ``__class__``/``__module__``/``__data__``
convention of ``azure-functions-durable`` (its own ``df_dumps``/``df_loads``).
"""

from __future__ import annotations

import json
from typing import Any, cast

from azure.durable_functions.models.utils.df_serialization import df_dumps, df_loads
from durabletask.serialization import DataConverter


def df_input(raw: Any, expected_type: type | None = None) -> Any:
    """Decode an orchestration input the way ``DurableOrchestrationContext.get_input`` does.

    The Durable Functions Python client and context send inputs as JSON *text*, so the stored
    input is usually a JSON string that must be parsed once more. Inputs posted as a raw JSON
    object (ADF, curl) arrive as a dict and are decoded through the same codec.
    """
    if raw is None:
        return None
    if isinstance(raw, str):
        return df_loads(raw, expected_type=expected_type)
    if isinstance(raw, dict):
        return df_loads(json.dumps(raw), expected_type=expected_type)
    return raw


class DurableFunctionsDataConverter(DataConverter):
    """Durable Task data converter with the Durable Functions wire format.

    Builtins are plain JSON; custom objects use the ``__class__``/``__module__``/``__data__``
    convention of ``azure-functions-durable``, so payloads look the same as in Azure.
    """

    def serialize(self, value: Any) -> str | None:
        if value is None:
            return None
        return cast(str, df_dumps(value))

    def deserialize(self, data: str | None, target_type: type | None = None) -> Any:
        if data is None or data == "":
            return None
        return df_loads(data, expected_type=target_type)

    def coerce(self, value: Any, target_type: type | None = None) -> Any:
        if target_type is None or value is None or isinstance(value, target_type):
            return value
        return df_loads(json.dumps(value), expected_type=target_type)
