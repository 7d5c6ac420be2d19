"""Region ids from the store master: which can name a segment."""

from __future__ import annotations

from orchestrators.regions import region_ids


def test_region_ids_are_lowercased_and_unusable_ones_set_apart() -> None:
    usable, refused = region_ids(["R01", " r02 ", "", "walmart-us", "a" * 40, "r_3"])
    assert usable == {"r01", "r02", "r_3"}
    assert refused == {"walmart-us", "a" * 40}
