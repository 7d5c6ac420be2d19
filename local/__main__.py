"""``python -m local`` — run the app locally on real parts.

    python -m local start   start Azurite and the function app; serve until Ctrl-C
    python -m local run     the same, then run the end-to-end demo when the app has one
    python -m local run --dataset walmart [--data DIR] [--many-models]
                            the same loop on the real Walmart files (../shared/data/walmart)
    python -m local serve --settings FILE
                            serve the app with exactly the app settings in FILE (a JSON
                            object, e.g. a deployment's), starting nothing else

``--exit`` stops everything after the run's summary instead of serving; ``--json`` prints one
machine-readable line with the URLs once everything is up (tests use it). Ctrl-C (or SIGTERM)
stops everything the command started. With ``--dataset walmart`` the last line printed is the
run's ``walmart rows_in=... submission=PATH`` line, and the exit code is 1 when a check failed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from adapters.errors import SettingsError
from local.hosting.azurite import REPO_ROOT, AzuriteError
from local.hosting.functions import AppIndexError
from local.hosting.runtime import DEFAULT_STATE_DIR, LocalRuntime

WALMART_DATA = REPO_ROOT.parent / "shared" / "data" / "walmart"


def _print_summary(info: dict[str, object]) -> None:
    functions = info["functions"]
    assert isinstance(functions, list)
    print(f"\nLocal Functions host: {info['base_url']}")
    print(f"Keys: {info['keys_file']} (function key: {info['function_key']})")
    azurite = info["azurite"]
    assert isinstance(azurite, dict)
    print(f"Azurite blob: {azurite['blob']}  queue: {azurite['queue']}  (pid {azurite['pid']})")
    print(f"Dashboard: {info['dashboard']}   Mail: {info['mail_dir']}")
    if info.get("durable_management"):
        print(f"Durable management API: {info['durable_management']}{{instanceId}}")
    print(f"\n{len(functions)} function(s):")
    for f in functions:
        print(f"  {f['name']:<28} {f['binding']}")
        if f["url"]:
            print(f"  {'':<28} {f['url']}")
    print()


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    # The storage SDK logs every request at INFO.
    for noisy in ("azure", "urllib3", "durabletask", "local.hosting.durable.worker"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # azure-ai-ml announces its experimental schema classes whenever a pipeline is parsed.
    logging.getLogger("azure.ai.ml").setLevel(logging.ERROR)
    logging.getLogger("mail.log").setLevel(logging.WARNING)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m local", description=__doc__.split("\n")[0])
    parser.add_argument(
        "command",
        choices=("start", "run", "serve"),
        help="start: serve; run: serve + demo; serve: the app alone with --settings",
    )
    parser.add_argument("--settings", type=Path, help="with serve: app settings (JSON object)")
    parser.add_argument(
        "--blob-poll-interval", type=float, default=1.0, help="with serve: blob scan seconds"
    )
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    parser.add_argument("--port", type=int, default=7071, help="host port (0 = any free port)")
    parser.add_argument("--in-memory", action="store_true", help="keep Azurite data in memory")
    parser.add_argument("--json", action="store_true", help="print one JSON line when ready")
    parser.add_argument("--no-demo", action="store_true", help="with run: skip the demo")
    parser.add_argument(
        "--dataset", choices=("demo", "walmart"), default="demo",
        help="with run: the synthetic demo, or the Walmart files through the whole loop",
    )  # fmt: skip
    parser.add_argument(
        "--data", type=Path, default=WALMART_DATA, help="with --dataset walmart: its folder"
    )
    parser.add_argument(
        "--many-models", action="store_true",
        help="with --dataset walmart: one model per store x department (train_many.yml)",
    )  # fmt: skip
    parser.add_argument("--exit", action="store_true", help="stop after the run's summary")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)
    walmart = args.command == "run" and args.dataset == "walmart"
    if args.many_models and not walmart:
        parser.error("--many-models applies to run --dataset walmart")
    if walmart:
        from local.hosting.walmart import OVERRIDES, WalmartDataMissing, check_data

        try:
            check_data(args.data)
        except WalmartDataMissing as exc:
            print(f"cannot run the Walmart loop: {exc}", file=sys.stderr)
            return 2

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if args.command == "serve":
        return _serve_app(args, stop)

    runtime = LocalRuntime(
        state_dir=args.state_dir,
        persist_storage=not args.in_memory,
        port=args.port,
        overrides=OVERRIDES if walmart else {},
    )
    try:
        try:
            runtime.start()
        except (SettingsError, AzuriteError, AppIndexError) as exc:
            print(f"cannot start the local runtime: {exc}", file=sys.stderr)
            return 2
        except OSError as exc:
            print(f"cannot start the local runtime: {exc}", file=sys.stderr)
            return 2
        info = runtime.describe()
        if args.json:
            # One write with its newline: log lines from other threads (stderr may share
            # the pipe) must not land inside the JSON line.
            sys.stdout.write(json.dumps(info) + "\n")
            sys.stdout.flush()
        else:
            _print_summary(info)
        if walmart:
            return _walmart(runtime, stop, args.data, args.many_models, args.exit)
        if args.command == "run" and not args.no_demo:
            if importlib.util.find_spec("local.hosting.demo") is None:
                print("No demo scenario is installed yet; the runtime is serving the app.")
            else:
                importlib.import_module("local.hosting.demo").run(runtime, stop)
        if not args.exit:
            _serve(stop)
    finally:
        runtime.stop()
    return 0


def _serve(stop: threading.Event, notice: bool = True) -> None:
    if notice:
        print("Serving. Press Ctrl-C to stop everything.", flush=True)
    while not stop.wait(0.5):
        pass
    print("Stopping...", file=sys.stderr, flush=True)


def _walmart(
    runtime: LocalRuntime, stop: threading.Event, data: Path, many_models: bool, exit_after: bool
) -> int:
    """The Walmart loop; its summary's last line is the last line printed (serving or not)."""
    from local.hosting.walmart import print_summary, run

    result = run(runtime, stop, data, many_models=many_models)
    if not exit_after:
        print("\nServing. Press Ctrl-C to stop everything.", flush=True)
    print_summary(result)
    if not exit_after:
        _serve(stop, notice=False)
    return 1 if result.problems else 0


def _serve_app(args: argparse.Namespace, stop: threading.Event) -> int:
    """``serve``: the app alone, with the app settings in ``--settings``."""
    from local.hosting.runtime import serve_with_settings

    if args.settings is None:
        print("serve needs --settings FILE (a JSON object of app settings)", file=sys.stderr)
        return 2
    try:
        settings = json.loads(args.settings.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        print(f"cannot read {args.settings}: {exc}", file=sys.stderr)
        return 2
    if not isinstance(settings, dict):
        print(f"{args.settings} must hold a JSON object of app settings", file=sys.stderr)
        return 2
    try:
        host = serve_with_settings(
            {str(k): str(v) for k, v in settings.items()},
            args.state_dir,
            port=args.port,
            blob_poll_interval=args.blob_poll_interval,
        )
    except (SettingsError, AppIndexError) as exc:
        print(f"cannot serve the app: {exc}", file=sys.stderr)
        return 2
    try:
        info = {"base_url": host.base_url, "keys_file": str(args.state_dir / "host-keys.json")}
        sys.stdout.write(json.dumps(info) + "\n" if args.json else f"Serving at {host.base_url}\n")
        sys.stdout.flush()
        while not stop.wait(0.5):
            pass
    finally:
        host.stop()
        from adapters.telemetry import flush_telemetry

        flush_telemetry()  # what the app recorded reaches Application Insights before exit
    return 0


if __name__ == "__main__":
    sys.exit(main())
