"""Command line of the local Azure ML executor.

    python -m local.aml run PIPELINE.yml [--set inputs.NAME=VALUE ...] [--workdir DIR]
                                         [--datastore NAME=DIR ...] [--datastore-root DIR]
                                         [--env declared|project]
    python -m local.aml prepare PIPELINE.yml ...   build every step environment they declare
    python -m local.aml status JOB_NAME [--workdir DIR]
    python -m local.aml cancel JOB_NAME [--workdir DIR]
    python -m local.aml component|data|environment create --file X.yml [--set KEY=VALUE ...]
    python -m local.aml component|data|environment list [--name NAME]
    python -m local.aml component|data|environment show --name NAME [--version V | --label latest]

``run`` streams step status lines and exits 0 when the job is Completed, 1 otherwise.
``execute`` (used by the PipelineJobs adapter) runs an already submitted job; ``launch`` (also
the adapter's) forks such a process per job name read from standard input, from a process
that has imported what jobs need once (local/aml/launcher.py). ``--env
project`` runs every step in the project's virtualenv instead of its component's environment.
``prepare`` builds environments ahead of time (``make run`` does, so the demo never waits).
The asset commands are the local ``az ml component|data|environment create|list|show``: they
register assets in the local workspace under ``WORKDIR/assets`` and print them as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from adapters.errors import BadInputError, ConflictError, NotFoundError
from adapters.events import EventGridWebhookPublisher, EventPublisher, NullEventPublisher
from local.aml.environments import DEFAULT_CACHE, EnvironmentCache
from local.aml.executor import DEFAULT_ROOT, ENV_DECLARED, ENV_MODES, LocalExecutor
from local.aml.status import JobStatus
from local.aml.store import JobRecord
from local.aml.tracking import sqlite_tracking_uri


def _parse_sets(values: list[str]) -> dict[str, str]:
    inputs: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.startswith("inputs.") or len(key) <= len("inputs."):
            raise BadInputError(f"--set expects inputs.NAME=VALUE, got {item!r}")
        inputs[key.removeprefix("inputs.")] = value
    return inputs


def _parse_datastores(values: list[str]) -> dict[str, str]:
    stores: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise BadInputError(f"--datastore expects NAME=LOCAL_DIR, got {item!r}")
        stores[key] = value
    return stores


def _printer(record: JobRecord, step: str | None) -> None:
    if step is None:
        if record.status == JobStatus.QUEUED.value:
            for line in record.warnings:
                print(f"[{record.name}] warning: {line}", flush=True)
        print(f"[{record.name}] job {record.status}", flush=True)
        return
    info = record.steps[step]
    extra = f" (exit code {info.exit_code})" if info.exit_code not in (None, 0) else ""
    print(f"[{record.name}] step {step}: {info.status}{extra}", flush=True)


def _publisher(url: str | None) -> EventPublisher:
    return EventGridWebhookPublisher(url) if url else NullEventPublisher()


def _executor(args: argparse.Namespace, stream: bool) -> LocalExecutor:
    root = Path(args.workdir).resolve()
    tracking = args.tracking_uri
    if tracking is None:
        tracking = sqlite_tracking_uri(root.parent / "mlflow")
    return LocalExecutor(
        root,
        publisher=_publisher(args.events_url),
        tracking_uri=tracking or None,
        max_parallel=args.max_parallel,
        step_timeout=args.step_timeout,
        on_status=_printer if stream else None,
        datastore_root=args.datastore_root,
        datastores=_parse_datastores(args.datastore),
        environments=EnvironmentCache(args.env_cache),
        env_mode=args.env,
        progress=_say if stream else None,
    )


def _say(line: str) -> None:
    print(line, flush=True)


def _report(record: JobRecord) -> int:
    if record.status == JobStatus.COMPLETED.value:
        for name, path in sorted(record.outputs.items()):
            print(f"output {name}: {path}")
        return 0
    print(f"job {record.name} {record.status}: {record.error}", file=sys.stderr)
    if record.failed_step:
        print(f"failed step: {record.failed_step}", file=sys.stderr)
    return 1


ASSET_KINDS = {"component": "components", "data": "data", "environment": "environments"}


def _asset_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``component``, ``data`` and ``environment``, each with ``create``, ``list``, ``show``
    and the flags ``az ml <kind> create`` accepts that mean something locally."""
    for kind in ASSET_KINDS:
        group = sub.add_parser(kind, help=f"register, list and show {kind} assets locally")
        verbs = group.add_subparsers(dest="verb", required=True)
        create = verbs.add_parser("create", help=f"register a {kind} (az ml {kind} create)")
        create.add_argument("--file", "-f", default=None, help="the asset's YAML")
        create.add_argument("--name", "-n", default=None)
        create.add_argument("--version", "-v", default=None)
        create.add_argument(
            "--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
            help="override a YAML field (dotted keys; repeatable)",
        )  # fmt: skip
        if kind != "component":
            create.add_argument("--description", "-d", default=None)
        if kind == "data":
            create.add_argument("--path", "-p", default=None, help="local path or URI")
            create.add_argument("--type", "-t", default=None, help="uri_folder, uri_file, mltable")
        if kind == "environment":
            create.add_argument("--image", "-i", default=None)
            create.add_argument("--conda-file", default=None)
            create.add_argument("--build-context", "-b", default=None)
            create.add_argument("--dockerfile-path", default=None)
        listing = verbs.add_parser("list", help=f"registered {kind} versions")
        listing.add_argument("--name", "-n", default=None)
        shown = verbs.add_parser("show", help=f"one {kind} version (default: the latest)")
        shown.add_argument("--name", "-n", required=True)
        which = shown.add_mutually_exclusive_group()
        which.add_argument("--version", "-v", default=None)
        which.add_argument("--label", "-l", default=None)
        for verb in (create, listing, shown):
            verb.add_argument(
                "--workdir", "--root", dest="workdir", default=str(DEFAULT_ROOT),
                help="the local workspace's folder (default .local/aml)",
            )  # fmt: skip


def _parse_overrides(values: list[str]) -> dict[str, object]:
    from local.aml.asset_create import parse_value

    overrides: dict[str, object] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise BadInputError(f"--set expects KEY=VALUE, got {item!r}")
        overrides[key.strip()] = parse_value(value)
    return overrides


def _asset_command(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from local.aml import asset_create, assets

    root = Path(args.workdir).resolve()
    kind = ASSET_KINDS[args.command]
    if args.verb == "list":
        print(json.dumps(assets.list_versions(root, kind, args.name), indent=2))
        return 0
    if args.verb == "show":
        print(json.dumps(assets.show(root, kind, args.name, args.version, args.label), indent=2))
        return 0
    if args.file is None and kind == "components":
        raise BadInputError("component create needs --file COMPONENT.yml")
    overrides = _parse_overrides(args.sets)
    fields: dict[str, object] = {"name": args.name, "version": args.version}
    created: object
    if kind == "components":
        given = {k: v for k, v in fields.items() if v is not None}
        created = asdict(asset_create.create_component(root, args.file, {**given, **overrides}))
    elif kind == "data":
        fields.update(path=args.path, type=args.type, description=args.description)
        data = asset_create.create_data(root, file=args.file, fields=fields, overrides=overrides)
        created = asdict(data)
    else:
        fields.update(image=args.image, conda_file=args.conda_file, description=args.description)
        if args.build_context is not None:
            fields["build"] = {"path": args.build_context, "dockerfile_path": args.dockerfile_path}
        created = asset_create.create_environment(
            root, file=args.file, fields=fields, overrides=overrides
        )
    print(json.dumps(created, indent=2))
    return 0


def _prepare(executor: LocalExecutor, pipelines: list[str]) -> int:
    """Build every environment the pipelines' steps declare; one line per environment."""
    seen: set[str] = set()
    for pipeline in pipelines:
        for step, env in executor.declared_environments(pipeline).items():
            if env.key in seen:
                continue
            seen.add(env.key)
            built = executor.environments.ensure(env, executor.progress)
            how = "cached" if built.cached else f"built in {built.seconds:.1f}s"
            print(f"{built.name}: {built.packages} packages, {how} ({built.folder.name}; {step})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m local.aml", description=__doc__.splitlines()[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--workdir",
            "--root",
            dest="workdir",
            default=str(DEFAULT_ROOT),
            help="where job records, outputs and logs live (default .local/aml)",
        )
        p.add_argument(
            "--tracking-uri",
            default=None,
            help="MLflow tracking URI (default: sqlite store in .local/mlflow; '' disables)",
        )
        p.add_argument("--events-url", default=None, help="Event Grid webhook to publish to")
        p.add_argument("--max-parallel", type=int, default=2, help="steps run at once (default 2)")
        p.add_argument(
            "--step-timeout", type=float, default=3600.0, help="seconds per step without limits"
        )
        p.add_argument(
            "--datastore-root",
            default=None,
            help="where azureml://datastores/NAME/... live locally (default WORKDIR/datastores)",
        )
        p.add_argument(
            "--datastore",
            action="append",
            default=[],
            metavar="NAME=DIR",
            help="serve datastore NAME from a local folder (repeatable)",
        )
        p.add_argument(
            "--env",
            choices=ENV_MODES,
            default=ENV_DECLARED,
            help="declared: each step in its component's environment (default); project: "
            "every step in the project's virtualenv",
        )
        p.add_argument(
            "--env-cache",
            default=str(DEFAULT_CACHE),
            help="where step environments are built (default .local/envs)",
        )

    run = sub.add_parser("run", help="run a pipeline YAML and stream step status")
    run.add_argument("pipeline")
    run.add_argument("--set", dest="sets", action="append", default=[], metavar="inputs.NAME=VALUE")
    run.add_argument("--experiment-name", default=None)
    common(run)
    execute = sub.add_parser("execute", help="run an already submitted job")
    execute.add_argument("name")
    common(execute)
    launch = sub.add_parser(
        "launch", help="fork a warm process per job named on standard input (see launcher.py)"
    )
    common(launch)
    prepare = sub.add_parser("prepare", help="build the step environments of pipelines")
    prepare.add_argument("pipelines", nargs="+")
    common(prepare)
    status = sub.add_parser("status", help="print a job record as JSON")
    status.add_argument("name")
    common(status)
    cancel = sub.add_parser("cancel", help="request cancellation of a job")
    cancel.add_argument("name")
    common(cancel)
    _asset_parsers(sub)
    args = parser.parse_args(argv)

    try:
        return _command(args, list(argv if argv is not None else sys.argv[1:]))
    except (BadInputError, NotFoundError, ConflictError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _command(args: argparse.Namespace, raw: list[str]) -> int:
    if args.command in ASSET_KINDS:
        return _asset_command(args)
    if args.command == "run":
        executor = _executor(args, stream=True)
        record = executor.submit(
            args.pipeline, _parse_sets(args.sets), experiment_name=args.experiment_name
        )
        return _report(executor.run(record.name))
    if args.command == "execute":
        return _report(_executor(args, stream=False).run(args.name))
    if args.command == "launch":
        from local.aml.launcher import serve

        return serve(raw[1:], Path(args.workdir), sys.stdin, sys.stdout)
    if args.command == "prepare":
        return _prepare(_executor(args, stream=True), args.pipelines)
    executor = LocalExecutor(Path(args.workdir))
    if args.command == "status":
        print(json.dumps(executor.status(args.name).to_json(), indent=2))
        return 0
    executor.cancel(args.name)
    print(f"cancel requested for {args.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
