"""Prep step: join the standard inputs, label velocity, and write feature frames per mode.

train / model_test mode: ``train.csv`` (history) and ``holdout.csv`` (the last N weeks); in
train mode also ``fit.csv`` and ``validation.csv``: the history without its last
``validation_weeks`` and those weeks with features from before them, on which the train step
stops training early and fits the ensemble (never on the holdout).
score mode: ``train.csv`` (all history) and ``future.csv`` (the next N weeks from the scoring date
for every known series, or, given a conditioned ``--horizon``, exactly the rows it requests).
Always ``meta.json`` with the exogenous columns, dataset versions and forecast origin.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from . import features as F
from .schema import SERIES
from .step_common import dataset_version, write_json


def run(args: argparse.Namespace) -> dict[str, object]:
    shipments = F.read_folder(args.shipments)
    stores = F.read_folder(args.stores)
    weather = F.read_folder(args.weather) if args.weather else None
    events = F.read_folder(args.events) if args.events else None
    frame, exog = F.join_inputs(shipments, stores, weather, events)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    if args.mode == "score":
        history = frame
        if args.scoring_date:
            history = frame[frame["week_start"] < pd.Timestamp(args.scoring_date)]
        labelled = history.assign(velocity=F.assign_velocity(history))
        history = F.filter_segment(labelled, args.region, args.format, args.velocity)
        start = pd.Timestamp(args.scoring_date) if args.scoring_date else None
        if args.horizon:
            requested = F.requested_weeks(F.read_folder(args.horizon), labelled, start)
            target = F.filter_segment(requested, args.region, args.format, args.velocity)
        else:
            target = F.future_weeks(history, args.horizon_weeks, start)
        extra = [c for c in (*exog, "event_count") if c in frame]
        known = frame[[*SERIES, "week_start", *extra]]
        target = target.merge(known, on=[*SERIES, "week_start"], how="left")
        F.build_features(history, history, exog).to_csv(out / "train.csv", index=False)
        F.build_features(history, target, exog).to_csv(out / "future.csv", index=False)
    else:
        history, holdout = F.split_holdout(frame, args.holdout_weeks)
        frame = frame.assign(velocity=F.assign_velocity(frame, history))
        frame = F.filter_segment(frame, args.region, args.format, args.velocity)
        history, holdout = F.split_holdout(frame, args.holdout_weeks)
        F.build_features(history, history, exog).to_csv(out / "train.csv", index=False)
        F.build_features(history, holdout, exog).to_csv(out / "holdout.csv", index=False)
        split = F.validation_split(history, args.validation_weeks) if args.mode == "train" else None
        if split is not None:
            fit, check = split
            F.build_features(fit, fit, exog).to_csv(out / "fit.csv", index=False)
            F.build_features(fit, check, exog).to_csv(out / "validation.csv", index=False)
    if history.empty:
        raise F.InputError("no rows left for the requested segment filter")
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
        "mode": args.mode,
        "exog": exog,
        "dataset_versions": versions,
        "origin": str(history["week_start"].max().date()),
        "validation": (out / "validation.csv").exists(),
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
    parser.add_argument("--mode", choices=("train", "score", "model_test"), default="train")
    parser.add_argument("--holdout_weeks", type=int, default=13)
    parser.add_argument("--horizon_weeks", type=int, default=13)
    parser.add_argument("--validation_weeks", type=int, default=F.VALIDATION_WEEKS)
    parser.add_argument("--scoring_date", default=None)
    parser.add_argument("--horizon", default=None, help="score mode: the requested rows")
    parser.add_argument("--region", default="*")
    parser.add_argument("--format", default="*")
    parser.add_argument("--velocity", default="*")
    parser.add_argument("--output", required=True)
    meta = run(parser.parse_args(argv))
    print(f"prep: {len(meta['segments'])} segment(s), origin {meta['origin']}")  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    sys.exit(main())
