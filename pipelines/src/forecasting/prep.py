"""Prep step: join the standard inputs, label velocity, and write what the next step needs.

Forecasts are made for the requested segment (``--region/--format/--velocity``), but learned
from every series of the inputs (the context): the direct model is one model across segments.

train / model_test mode: ``history.csv`` — the context's joined rows before the holdout (the
train step stacks training and validation origins from them) — and ``holdout.csv``: the
segment's last N weeks with features as of the origin (the history's last week).
score mode: ``future.csv`` — the next N weeks from the scoring date for the segment's series,
with features as of the origin, the holiday calendar and the event calendar joined to each
future week directly.
Always ``meta.json``: the outside columns (and which are known in advance), dataset versions,
the forecast origin, the horizon the model must cover and the segments.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from . import features as F
from .step_common import dataset_version, write_json


def run(args: argparse.Namespace) -> dict[str, object]:
    shipments = F.read_folder(args.shipments)
    stores = F.read_folder(args.stores)
    weather = F.read_folder(args.weather) if args.weather else None
    events = F.read_folder(args.events) if args.events else None
    frame, exog = F.join_inputs(shipments, stores, weather, events)
    # Weather is observed, not planned: no outside column of the standard inputs is known in
    # advance (events are, through event_count and the calendar).
    known_ahead: list[str] = []
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    if args.mode == "score":
        history = frame
        if args.scoring_date:
            history = frame[frame["week_start"] < pd.Timestamp(args.scoring_date)]
        if history.empty:
            raise F.InputError("no history before the scoring date")
        history = history.assign(velocity=F.assign_velocity(history))
        segment = F.filter_segment(history, args.region, args.format, args.velocity)
        start = pd.Timestamp(args.scoring_date) if args.scoring_date else None
        target = F.future_weeks(segment, args.horizon_weeks, start) if len(segment) else segment
        if events is not None and len(target):
            target = target.assign(event_count=F.event_counts(target, events).to_numpy())
        F.build_features(history, target, exog, known_ahead).to_csv(out / "future.csv", index=False)
    else:
        history, _ = F.split_holdout(frame, args.holdout_weeks)
        frame = frame.assign(velocity=F.assign_velocity(frame, history))
        history, holdout = F.split_holdout(frame, args.holdout_weeks)
        segment = F.filter_segment(history, args.region, args.format, args.velocity)
        holdout = F.filter_segment(holdout, args.region, args.format, args.velocity)
        history.to_csv(out / "history.csv", index=False)
        F.build_features(history, holdout, exog, known_ahead).to_csv(
            out / "holdout.csv", index=False
        )
    if segment.empty:
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
        "known_ahead": known_ahead,
        "dataset_versions": versions,
        "origin": str(history["week_start"].max().date()),
        "horizon": max(args.holdout_weeks, args.horizon_weeks),
        "context_series": int(history[["store_id", "product_id"]].drop_duplicates().shape[0]),
        "segments": sorted(
            "/".join(k) for k in segment[["region", "format", "velocity"]].drop_duplicates().values
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
    parser.add_argument("--scoring_date", default=None)
    parser.add_argument("--region", default="*")
    parser.add_argument("--format", default="*")
    parser.add_argument("--velocity", default="*")
    parser.add_argument("--output", required=True)
    meta = run(parser.parse_args(argv))
    print(f"prep: {len(meta['segments'])} segment(s), origin {meta['origin']}")  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    sys.exit(main())
