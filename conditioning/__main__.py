"""Command line: condition one raw file into a directory, no Azure needed.

    python -m conditioning SOURCE INPUT --out DIR [--mapping FILE] [--as-of YYYY-MM-DD]

Exit status: 0 when the file was processed (even with rejected rows, and when this exact content
was processed before), 2 with one line on stderr when the file is unusable (it is then kept whole
under DIR/quarantine with a manifest saying why) or the arguments are wrong.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from conditioning.contracts import CONTRACTS
from conditioning.engine import condition_file
from conditioning.mapping import MappingError, builtin_mappings, load_mapping
from conditioning.publish import publish_to_directory, published_version_exists


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m conditioning",
        description="Condition a raw file into standard CSV, rejects and a manifest.",
    )
    p.add_argument("source", choices=sorted(CONTRACTS), help="standard source the file feeds")
    p.add_argument(
        "input", type=Path, help="raw file: CSV (any delimiter, gzip), JSONL, Parquet, XLSX"
    )
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--mapping", type=Path, help="mapping YAML (default: chosen by the header)")
    p.add_argument(
        "--as-of", type=dt.date.fromisoformat, help="day future dates are judged against"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not args.input.is_file():
        print(f"error: {args.input} is not a readable file", file=sys.stderr)
        return 2
    try:
        mapping = load_mapping(args.mapping) if args.mapping else None
        candidates = [] if mapping else builtin_mappings().get(args.source, [])
    except MappingError as exc:
        print(f"error: {str(exc).splitlines()[0]} {'; '.join(exc.problems)}", file=sys.stderr)
        return 2
    if mapping is not None and mapping.source != args.source:
        print(
            f"error: mapping {mapping.name!r} feeds {mapping.source}, not {args.source}",
            file=sys.stderr,
        )
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="conditioning-") as tmp:
        result = condition_file(
            args.input,
            args.source,
            Path(tmp),
            mapping=mapping,
            candidates=candidates,
            as_of=args.as_of,
            skip_if=lambda version: published_version_exists(args.out, args.source, version),
        )
        if result is None:
            print(
                json.dumps({"status": "unchanged", "detail": "this content was processed before"})
            )
            return 0
        publish_to_directory(result, args.out)
    m = result.manifest
    if not result.usable:
        print(
            f"error: {args.input.name} quarantined ({result.reason_code}): {result.reason}",
            file=sys.stderr,
        )
        return 2
    summary = {
        k: m[k]
        for k in ("status", "source", "dataset_version", "rows_in", "rows_out", "rows_rejected")
    }
    summary["output"] = str(args.out / "conditioned" / args.source / result.dataset_version)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
