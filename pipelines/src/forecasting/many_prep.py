"""Prep step of train_many: the train pipeline's features, one MLTable partition per model.

Same joins, velocity labels, segment filter and holdout split as ``prep.py`` in train mode;
the history rows and the holdout feature rows of every (segment x ``--partition_by`` keys)
partition go to their own folder, so
Azure ML's ``partition_keys: [partition]`` hands each one to ``run()`` as a DataFrame.
Writes ``<output>/MLTable``, ``<output>/<partition>/part.csv`` and ``<output>/meta.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from . import features as F
from . import many
from .schema import SEGMENT
from .step_common import dataset_version, write_json


def run(args: argparse.Namespace) -> dict[str, object]:
    keys = many.parse_keys(args.partition_by)
    shipments = F.read_folder(args.shipments)
    stores = F.read_folder(args.stores)
    weather = F.read_folder(args.weather) if args.weather else None
    events = F.read_folder(args.events) if args.events else None
    frame, exog = F.join_inputs(shipments, stores, weather, events)
    history, _ = F.split_holdout(frame, args.holdout_weeks)
    frame = frame.assign(velocity=F.assign_velocity(frame, history))
    frame = F.filter_segment(frame, args.region, args.format, args.velocity)
    if frame.empty:
        raise F.InputError("no rows left for the requested segment filter")
    history, holdout = F.split_holdout(frame, args.holdout_weeks)
    out = Path(args.output)
    # Each partition learns from its own history rows; its holdout rows carry features as of
    # the origin, computed from those rows alone (the partition's model sees nothing else).
    parts = []
    grain = [*SEGMENT, *(k for k in keys if k not in SEGMENT)]
    for _, rows in history.groupby(grain, sort=False):
        mine = holdout.merge(rows[grain].drop_duplicates(), on=grain, how="inner")
        if len(mine):
            parts.append(F.build_features(rows, mine, exog))
    features = pd.concat(parts, ignore_index=True) if parts else holdout.iloc[0:0]
    partitions = many.write_partitions(history, features, keys, out)
    versions = {
        name: dataset_version(path)
        for name, path in (
            ("shipments", args.shipments),
            ("stores", args.stores),
            ("weather", args.weather),
            ("events", args.events),
        )
        if path
    }
    meta = {
        "mode": "train_many",
        "exog": exog,
        "partition_by": list(keys),
        "partitions": len(partitions),
        "horizon": args.holdout_weeks,
        "dataset_versions": versions,
        "origin": str(history["week_start"].max().date()),
        "segments": sorted(
            "/".join(k) for k in history[["region", "format", "velocity"]].drop_duplicates().values
        ),
    }
    write_json(out / "meta.json", meta)
    return meta


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shipments", required=True)
    parser.add_argument("--stores", required=True)
    parser.add_argument("--weather", default=None)
    parser.add_argument("--events", default=None)
    parser.add_argument("--holdout_weeks", type=int, default=13)
    parser.add_argument("--region", default="*")
    parser.add_argument("--format", default="*")
    parser.add_argument("--velocity", default="*")
    parser.add_argument("--partition_by", default=",".join(many.DEFAULT_PARTITION_BY))
    parser.add_argument("--output", required=True)
    meta = run(parser.parse_args(argv))
    print(f"prep_many: {meta['partitions']} partition(s) in {len(meta['segments'])} segment(s)")  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    sys.exit(main())
