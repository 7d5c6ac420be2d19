"""Which regions scheduled work covers: the ``MLOPS_REGIONS`` setting, or every region with data.

An empty ``MLOPS_REGIONS`` means "every region that has conditioned data" (the prod parameter
file sets it so). Regions are found through the ports, in the data the conditioning service
produced: the conditioned store master (source ``stores``) maps every store to its region, so
the regions it names are the regions whose shipments, weather and events the training pipeline
can join. Every conditioned version counts (a region dropped from a later master still has its
history). A region id that cannot name a segment (``REGION-FORMAT-VELOCITY`` needs 1-32
lowercase letters, digits or ``_``) is logged and left out rather than failing the schedule.
"""

from __future__ import annotations

import codecs
import csv
import logging
from collections.abc import Iterable, Iterator
from typing import IO, TYPE_CHECKING

from adapters.errors import BadInputError
from adapters.locator import data_files
from orchestrators.policies import Segment

if TYPE_CHECKING:
    from composition import Services

log = logging.getLogger(__name__)

STORE_MASTER = "stores"
REGION_COLUMN = "region"


def region_ids(values: Iterable[str]) -> tuple[set[str], set[str]]:
    """``(usable, refused)``: the region ids ``values`` name, lowercased as segments take them,
    split by whether they can name a segment. Pure."""
    usable: set[str] = set()
    refused: set[str] = set()
    for raw in values:
        region = raw.strip().lower()
        if not region:
            continue
        try:
            Segment(region, "large", "fast")
        except BadInputError:
            refused.add(region)
            continue
        usable.add(region)
    return usable, refused


def _column(stream: IO[bytes], name: str) -> Iterator[str]:
    """The values of column ``name`` of a CSV stream, read row by row (never whole)."""
    reader = csv.DictReader(codecs.iterdecode(stream, "utf-8"))
    if reader.fieldnames is None or name not in reader.fieldnames:
        return
    for row in reader:
        yield row.get(name) or ""


def regions_with_data(services: Services) -> tuple[str, ...]:
    """Every region named by a conditioned version of the store master, sorted."""
    assert services.datasets is not None
    lake, container = services.data_lake, services.settings.conditioned_container
    found: set[str] = set()
    refused: set[str] = set()
    for version in services.datasets.versions(STORE_MASTER):
        if version.status != "conditioned":
            continue
        for blob in data_files(container, version.files):
            with lake.open(container, blob) as stream:
                usable, bad = region_ids(_column(stream, REGION_COLUMN))
            found |= usable
            refused |= bad
    if refused:
        log.warning(
            "regions %s in the store master cannot name a segment (1-32 lowercase letters, "
            "digits or '_'); they are left out of scheduled work",
            ", ".join(sorted(refused)[:20]),
        )
    return tuple(sorted(found))


def covered_regions(services: Services) -> tuple[str, ...]:
    """The regions scheduled work covers: ``MLOPS_REGIONS`` when it names any, else every
    region with conditioned data (see the module docstring)."""
    configured = services.settings.automation.regions
    return configured if configured else regions_with_data(services)
