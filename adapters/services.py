"""The composition root for adapters: one ``Services`` set per process, built lazily.

``MLOPS_ENVIRONMENT`` chooses the set (``local`` or ``azure``); tests build their own
``Services`` with fakes and pass it to ``use_services``. Nothing here runs at import time, so
importing the function app never touches the network or heavy SDKs.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from adapters.settings import Settings, load_settings

if TYPE_CHECKING:
    from adapters.datalake import DataLake


@dataclass
class Services:
    """Every collaborator a trigger or activity may need, already configured."""

    settings: Settings
    data_lake: DataLake


def build_services(settings: Settings) -> Services:
    """Build the adapter set ``settings`` asks for."""
    from adapters.datalake import AzureBlobDataLake

    data_lake = AzureBlobDataLake.from_connection(settings.datalake)
    return Services(settings=settings, data_lake=data_lake)


_lock = threading.Lock()
_current: Services | None = None


def get_services() -> Services:
    """The process-wide ``Services``; built from the environment on first use."""
    global _current
    with _lock:
        if _current is None:
            _current = build_services(load_settings())
        return _current


def use_services(services: Services | None) -> None:
    """Install ``services`` for this process (tests, the local runtime); ``None`` resets."""
    global _current
    with _lock:
        _current = services
