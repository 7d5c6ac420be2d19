"""The automation loop run from an unpacked deployment package (a child process of
tests/e2e/test_package_flow.py).

    cd <unpacked package> && PYTHONPATH=<host folder> python -m tests.e2e.package_flow <out.json>

How the app comes from the package while its host comes from the repository: the working
folder is the unpacked package, so ``python -m`` puts it first on ``sys.path`` and the app's
packages (``function_app``, ``adapters``, ``orchestrators``, ...) import from there. The host
folder on ``PYTHONPATH`` holds only links to the repository's ``local`` (the local runtime,
which hosts the app as Azure Functions does in the cloud) and ``tests`` (this harness and its
scripted Azure ML control plane). The repository root itself is not on ``sys.path``: a module
or file the package lacks cannot be picked up from the repository by accident.

The run is one week of the loop, ADF-style: the ADF pipeline JSON starts ``train`` (job
submission, completion, registration), the ModelRegistered event starts a model test, the
champion is scored, and a second pipeline run trains a segment whose job fails, which sends
one alert email. Every file the process opens is recorded with an audit hook. The report
(JSON) says what happened, which app modules and files were read from where, and whether the
code folders Azure ML would upload hold the modules the pipeline steps run.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

_OPENED: list[str] = []


def _record_opens(event: str, args: tuple[object, ...]) -> None:
    if event == "open" and args and isinstance(args[0], str | bytes | os.PathLike):
        _OPENED.append(os.fsdecode(args[0]))


sys.addaudithook(_record_opens)

# Imports below this line are recorded too.
import json  # noqa: E402
import re  # noqa: E402
import time  # noqa: E402
from collections.abc import Mapping  # noqa: E402
from typing import Any  # noqa: E402

APP_PACKAGES = ("function_app", "adapters", "conditioning", "orchestrators", "triggers")
HOST_PACKAGES = ("local", "tests")
_STEP_MODULE = re.compile(r"python\s+-m\s+([\w.]+)")


def _under(path: str, folder: Path) -> bool:
    try:
        Path(path).resolve().relative_to(folder)
    except ValueError:
        return False
    return True


def run(report_path: Path) -> None:
    package = Path.cwd().resolve()
    repo = Path(__file__).resolve().parents[2]
    state = Path(os.environ["PACKAGE_FLOW_STATE"])

    from adapters.events import EventPublisher
    from local.aml.scripted import ScriptedPipelineJobs
    from local.hosting.azurite import Azurite
    from tests.e2e.adf import PipelineFailed, replay
    from tests.e2e.harness import ADF_PIPELINE, adf_http, adf_parameters, running_automation
    from tests.support import wait_until

    submitted: list[str] = []

    class RecordingJobs(ScriptedPipelineJobs):
        """The scripted control plane, recording the pipeline each submission names."""

        def submit(self, pipeline: str, inputs: Mapping[str, Any], **kwargs: Any) -> str:
            submitted.append(pipeline)
            return super().submit(pipeline, inputs, **kwargs)

    def jobs(publisher: EventPublisher, register: Any, root: Path) -> ScriptedPipelineJobs:
        return RecordingJobs(publisher, register, root)

    pipeline = json.loads(ADF_PIPELINE.read_text(encoding="utf-8"))
    report: dict[str, Any] = {}
    started = time.monotonic()
    with Azurite() as azurite, running_automation(azurite, state, jobs) as automation:
        body = {"segments": ["r01-large-fast"], "week": "2026-11-23"}
        run = replay(pipeline, adf_parameters(automation, body), adf_http(automation))
        report["train"] = {
            "runtimeStatus": run.variables["runtimeStatus"],
            "instance": run.outputs["Start orchestration"]["id"],
        }
        model_tests = wait_until(
            lambda: [j for j in automation.jobs.submissions
                     if j.pipeline == "model_test" and j.status == "Completed"],
            timeout=120,
        )  # fmt: skip
        report["model_test"] = {
            "model": model_tests[0].inputs.get("model_name"),
            "version": model_tests[0].inputs.get("model_version"),
        }
        automation.jobs.script.failing_segments = {"r09-small-fast"}
        failing = {"segments": ["r09-small-fast"], "week": "2026-11-23", "score": False}
        try:
            replay(pipeline, adf_parameters(automation, failing), adf_http(automation))
            report["failed_run"] = "the pipeline did not fail"
        except PipelineFailed as exc:
            report["failed_run"] = str(exc)
        mails = wait_until(automation.smtp.messages, timeout=60)
        report["alerts"] = [m.read_text(encoding="utf-8", errors="replace") for m in mails]
        report["jobs"] = sorted({j.pipeline for j in automation.jobs.submissions})
        report["submitted"] = sorted(set(submitted))
        report["uploads"] = _uploads(sorted(set(submitted)), package)
    report["seconds"] = round(time.monotonic() - started, 1)
    report["modules"] = _modules(package, repo)
    report["opened"] = _opened(package, repo)
    report_path.write_text(json.dumps(report, indent=1), encoding="utf-8")


def _uploads(pipelines: list[str], package: Path) -> list[str]:
    """Problems with what Azure ML would upload for each submitted pipeline: every step's code
    folder must be inside the package and hold the module its command runs."""
    from adapters.jobs import resolve_pipeline
    from local.aml.spec import load_pipeline

    problems: list[str] = []
    for name in pipelines:
        path = resolve_pipeline(name)
        if not _under(str(path), package):
            problems.append(f"{name} resolved to {path}, outside the package")
        for step in load_pipeline(path).steps.values():
            if not _under(str(step.code_dir), package):
                problems.append(f"{name}: step {step.name} uploads {step.code_dir}")
            for module in _STEP_MODULE.findall(step.command):
                source = step.code_dir.joinpath(*module.split("."))
                if not (source.with_suffix(".py").is_file() or (source / "__main__.py").is_file()):
                    problems.append(f"{name}: step {step.name} runs {module}, not in its code")
    return problems


def _host_folders(repo: Path) -> list[Path]:
    return [repo / name for name in (*HOST_PACKAGES, "node_modules", ".venv", "infra/adf")]


def _modules(package: Path, repo: Path) -> dict[str, list[str]]:
    """App modules loaded from the package, anything loaded from elsewhere in the repository
    (or an app module from anywhere else), and host modules that came from the package."""
    host = _host_folders(repo)
    from_package, from_elsewhere, host_in_package = [], [], []
    for name, module in sorted(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if not path:
            continue
        top = name.split(".")[0]
        if _under(path, package):
            (host_in_package if top in HOST_PACKAGES else from_package).append(f"{name}: {path}")
        elif top in APP_PACKAGES or (_under(path, repo) and not any(_under(path, h) for h in host)):
            from_elsewhere.append(f"{name}: {path}")
    return {
        "app_from_package": from_package,
        "app_from_elsewhere": from_elsewhere,
        "host_from_package": host_in_package,
    }


def _opened(package: Path, repo: Path) -> dict[str, list[str]]:
    """Files opened in the package, and files of the repository opened outside the host's
    folders (which would mean the app read something the package lacks)."""
    allowed = _host_folders(repo)
    in_package, in_repo = set(), set()
    for raw in _OPENED:
        path = Path(raw)
        if not path.is_absolute():
            path = package / path
        if _under(str(path), package):
            in_package.add(path.resolve().relative_to(package).as_posix())
        elif _under(str(path), repo) and not any(_under(str(path), a) for a in allowed):
            in_repo.add(path.resolve().relative_to(repo).as_posix())
    return {"in_package": sorted(in_package), "in_repo_outside_host": sorted(in_repo)}


if __name__ == "__main__":
    run(Path(sys.argv[1]))
