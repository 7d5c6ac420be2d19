"""The compiler's rules (tests/infra/bicep_checks.py) hold for every file in infra/, and each
rule is proven to fire on a small Bicep snippet that breaks it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.infra.bicep import INFRA, bicep_files
from tests.infra.bicep_checks import Problem, check_file, check_parameter_file


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: p.relative_to(INFRA).as_posix())
def test_infra_bicep_passes_the_compiler_checks(path: Path) -> None:
    assert [str(p) for p in check_file(path)] == []


@pytest.mark.parametrize("path", sorted(INFRA.glob("main.*.parameters.json")), ids=lambda p: p.name)
def test_parameter_files_fit_main_bicep(path: Path) -> None:
    assert [str(p) for p in check_parameter_file(path, INFRA / "main.bicep")] == []


MODULE = """\
@description('A name.')
param name string
param size int = 1
output id string = name
"""

# Each case: the file the check must reject, the problem code, and a word of the message.
BAD_SNIPPETS: dict[str, tuple[str, str, str]] = {
    "two @description on one param (BCP166)": (
        "@description('a')\n@description('b')\nparam p bool = false\noutput o bool = p\n",
        "duplicate-decorator",
        "@description appears twice on param p",
    ),
    "a decorator Bicep does not have": (
        "@descripton('a')\nparam p bool = false\noutput o bool = p\n",
        "unknown-decorator",
        "@descripton",
    ),
    "a var and a param with one name (BCP028)": (
        "param p string\nvar p = 'x'\noutput o string = p\n",
        "duplicate-symbol",
        "var p is already declared as a param",
    ),
    "a misspelt reference (BCP057)": (
        "param location string\noutput o string = locaton\noutput l string = location\n",
        "undeclared-identifier",
        "locaton is not declared",
    ),
    "an interpolated reference to nothing": (
        "param p string\nvar v = '${p}-${suffix}'\noutput o string = v\n",
        "undeclared-identifier",
        "suffix is not declared",
    ),
    "a loop variable used outside its loop": (
        "var xs = [for x in range(0, 2): x]\noutput o int = x\noutput all array = xs\n",
        "undeclared-identifier",
        "x is not declared",
    ),
    "a function that does not exist": (
        "output o string = toLowerCase('A')\n",
        "unknown-function",
        "toLowerCase()",
    ),
    "an unknown type": (
        "param p region\noutput o string = p\n",
        "undeclared-identifier",
        "no type region",
    ),
    "a param nothing reads (no-unused-params)": (
        "param used string\nparam forgotten string = ''\noutput o string = used\n",
        "unused-param",
        "param forgotten",
    ),
    "a var nothing reads (no-unused-vars)": (
        "var v = 1\noutput o int = 2\n",
        "unused-var",
        "var v",
    ),
    "a module argument the module does not declare (BCP037)": (
        "module m 'mod.bicep' = {\n  name: 'm'\n  params: {\n    name: 'a'\n    colour: 'red'\n"
        "  }\n}\n",
        "module-unknown-param",
        "declares no param colour",
    ),
    "a required module argument left out (BCP035)": (
        "module m 'mod.bicep' = {\n  name: 'm'\n  params: {\n    size: 2\n  }\n}\n",
        "module-missing-param",
        "requires name",
    ),
    "a module output that does not exist (BCP053)": (
        "module m 'mod.bicep' = {\n  name: 'm'\n  params: {\n    name: 'a'\n  }\n}\n"
        "output o string = m.outputs.resourceId\n",
        "module-unknown-output",
        "no output resourceId",
    ),
    "a module file that does not exist (BCP091)": (
        "module m 'modules/nope.bicep' = {\n  name: 'm'\n}\n",
        "module-path",
        "modules/nope.bicep does not exist",
    ),
}


def _problems(tmp_path: Path, text: str) -> list[Problem]:
    (tmp_path / "mod.bicep").write_text(MODULE)
    main = tmp_path / "main.bicep"
    main.write_text(text)
    return check_file(main)


@pytest.mark.parametrize("case", sorted(BAD_SNIPPETS))
def test_each_check_rejects_its_bad_snippet(case: str, tmp_path: Path) -> None:
    text, code, words = BAD_SNIPPETS[case]
    problems = _problems(tmp_path, text)
    assert [p.code for p in problems] == [code], [str(p) for p in problems]
    assert words in problems[0].message


def test_correct_use_of_every_construct_passes(tmp_path: Path) -> None:
    """The checks must not flag what the compiler accepts: loops, lambdas, functions, types."""
    text = """\
targetScope = 'resourceGroup'
@description('Names.')
@minLength(1)
param names string[]
type tier = 'a' | 'b'
param level tier = 'a'
func label(n string) string => '${n}-${level}'
var labelled = [for (n, i) in names: { name: label(n), index: i }]
var firsts = map(labelled, item => item.name)
resource account 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: first(firsts)
}
module m 'mod.bicep' = [for n in names: if (!empty(n)) {
  name: 'm-${n}'
  params: {
    name: n
  }
}]
output keys string = account.listKeys().keys[0].value
output ids array = [for (n, i) in names: m[i].outputs.id]
output location string = sys.concat(resourceGroup().location, az.resourceGroup().name)
"""
    assert [str(p) for p in _problems(tmp_path, text)] == []


TEMPLATE = """\
param name string
@allowed([512, 2048])
param memory int = 512
param enabled bool = false
param settings object = {}
output o string = '${name}${memory}${enabled}${string(settings)}'
"""

BAD_PARAMETER_FILES: dict[str, tuple[dict[str, object], str, str]] = {
    "a parameter the template does not declare": (
        {"name": {"value": "x"}, "colour": {"value": "red"}},
        "paramfile-unknown",
        "no param colour",
    ),
    "a required parameter left out": ({"memory": {"value": 512}}, "paramfile-missing", "name"),
    "a string where an int is declared": (
        {"name": {"value": "x"}, "memory": {"value": "2048"}},
        "paramfile-type",
        "str given, the param is int",
    ),
    "an azd placeholder for a bool": (
        {"name": {"value": "x"}, "enabled": {"value": "${ENABLED}"}},
        "paramfile-type",
        "as a string; the param is bool",
    ),
    "a value outside @allowed": (
        {"name": {"value": "x"}, "memory": {"value": 1024}},
        "paramfile-allowed",
        "1024 is not one of [512, 2048]",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_PARAMETER_FILES))
def test_each_parameter_file_check_rejects_its_bad_file(case: str, tmp_path: Path) -> None:
    values, code, words = BAD_PARAMETER_FILES[case]
    template = tmp_path / "main.bicep"
    template.write_text(TEMPLATE)
    assert check_file(template) == []
    parameters = tmp_path / "main.test.parameters.json"
    parameters.write_text(json.dumps({"parameters": values}))
    problems = check_parameter_file(parameters, template)
    assert [p.code for p in problems] == [code], [str(p) for p in problems]
    assert words in problems[0].message
