"""Response bodies shaped like Azure ML's own, read at test time from ``../shared/data``.

The stand-in never invents a body's layout: it starts from a body the real service sent (the
recordings of azure-ai-ml's own end-to-end tests) or from the official REST example, and
overlays the values of the scenario. A value under a key the template does not have is kept
(the SDK must see it) but recorded in ``deviations``; the fixtures fail a test that produced
any, so the bodies stay the service's shape as the SDK evolves.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

PIPELINE_RECORDING = (
    "recordings/azure-sdk-assets/pipeline_job/test_pipeline_job.pyTestPipelineJob"
    "test_pipeline_job_with_command_job[1-helloworld_pipeline_job_with_paths].json"
)
MODEL_RECORDING = (
    "recordings/azure-sdk-assets/model/test_model.pyTestModeltest_crud_model_with_stage.json"
)

# Maps whose keys are the caller's (tags, inputs, node names …): replaced whole, never merged.
FREE_FORM = frozenset(
    {
        "tags",
        "inputs",
        "outputs",
        "jobs",
        "componentSpec",
        "settings",
        "flavors",
        "services",
        "value",
        "userAssignedIdentities",
        "conda_file",
    }
)


class RestShapes:
    """Templates from ``root`` (``../shared/data/azureml-rest``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.deviations: list[str] = []

    @cache  # noqa: B019 - one stand-in per test; the templates never change
    def _load(self, relative: str) -> Any:
        path = self.root / relative
        return json.loads(path.read_text(encoding="utf-8"))

    def example(self, relative: str, status: str = "200") -> Any:
        """The response body of an official x-ms-example (``examples/<api-version>/…``)."""
        return copy.deepcopy(self._load(f"examples/{relative}")["responses"][status]["body"])

    def recorded(self, relative: str, method: str, path_part: str, status: int) -> Any:
        """The first recorded response body for ``method`` on a URI containing ``path_part``."""
        for entry in self._load(relative)["Entries"]:
            if (
                entry["RequestMethod"] == method
                and path_part in entry["RequestUri"]
                and entry["StatusCode"] == status
            ):
                return copy.deepcopy(entry["ResponseBody"])
        raise LookupError(f"{relative} has no {method} {path_part} → {status}")

    def shaped(
        self, template: Any, values: dict[str, Any], what: str, *, keep_rest: bool = True
    ) -> Any:
        """``template`` with ``values`` overlaid (nested dicts merge; free-form maps replace).

        ``keep_rest=False`` drops what ``values`` does not mention (for the REST examples,
        whose values are placeholders) except ``systemData``; recorded bodies keep theirs.
        """
        return self._overlay(template, values, what, 0, keep_rest)

    def _overlay(
        self, template: Any, values: dict[str, Any], where: str, depth: int, keep_rest: bool
    ) -> Any:
        base = template if isinstance(template, dict) else {}
        out = dict(base) if keep_rest else {k: v for k, v in base.items() if k == "systemData"}
        for key, value in values.items():
            free = key in FREE_FORM or (key == "properties" and depth > 0)
            if key not in base:
                self.deviations.append(f"{where}.{key} is not in the service's body")
                out[key] = value
            elif free or not isinstance(value, dict) or not isinstance(base[key], dict):
                out[key] = value
            else:
                out[key] = self._overlay(base[key], value, f"{where}.{key}", depth + 1, keep_rest)
        return out
