"""The deployment package (`make package`): exactly the files the app reads, built the way azd
builds it, and deployed by azure.yaml and the deploy workflow as it is.

The end-to-end run of the unpacked package is tests/e2e/test_package_flow.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from infra.scripts.package_app import (
    PackageError,
    build,
    is_ignored,
    package_files,
    parse_rules,
    read_rules,
)
from tests.infra.app_reads import HOST_PACKAGES, files_the_app_reads
from tests.infra.bicep import REPO_ROOT

# Never read by the app, whatever .funcignore says one day.
NEVER_SHIPPED = ("tests/", "docs/", "local/", "benchmarks/", "infra/", ".github/")


def package_problems(files: set[str], root: Path = REPO_ROOT) -> list[str]:
    """What is wrong with a package holding ``files``: anything it lacks that the app reads, and
    anything it holds that the app never reads."""
    needed = files_the_app_reads(root)
    problems = [f"the app reads {f} ({why}) but the package lacks it"
                for f, why in sorted(needed.items()) if f not in files]  # fmt: skip
    problems += [f"the package holds {f}, which the app never reads"
                 for f in sorted(files - set(needed))]  # fmt: skip
    return problems


def test_the_package_holds_exactly_what_the_app_reads() -> None:
    assert package_problems(set(package_files(REPO_ROOT))) == []


def test_the_package_holds_nothing_from_development_folders() -> None:
    files = package_files(REPO_ROOT)
    assert [f for f in files if f.startswith(NEVER_SHIPPED)] == []
    assert {f.split("/")[0] for f in files}.isdisjoint(HOST_PACKAGES)
    assert "pipelines/train.yml" in files and "host.json" in files


def _variant(edit: str) -> set[str]:
    """The package with ``edit`` applied to the real .funcignore (a line to add, or -line)."""
    text = (REPO_ROOT / ".funcignore").read_text(encoding="utf-8")
    if edit.startswith("-"):
        lines = [ln for ln in text.splitlines() if ln.strip() != edit[1:]]
        assert len(lines) < len(text.splitlines()), f"{edit[1:]} is not in .funcignore"
        text = "\n".join(lines)
    else:
        text += f"\n{edit}\n"
    return set(package_files(REPO_ROOT, parse_rules(text)))


@pytest.mark.parametrize(
    ("edit", "complaint"),
    [
        ("-/tests", "holds tests/infra/test_package.py, which the app never reads"),
        ("-/docs", "holds docs/operator-guide.md"),
        ("-/local", "holds local/hosting/host.py"),
        ("-/benchmarks", "holds benchmarks/startup.py"),
        ("-/conditioning/synthetic.py", "holds conditioning/synthetic.py"),
        # The deployment that failed every Azure ML submission: pipelines/ left out.
        ("pipelines", "reads pipelines/train.yml (the train pipeline the activities submit)"),
        ("/pipelines/src/forecasting/train.py", "reads pipelines/src/forecasting/train.py"),
        ("*.yml", "reads pipelines/components/train/conda.yml"),
        ("/conditioning/mappings/", "reads conditioning/mappings/shipments_vendor_eu.yaml"),
        ("/orchestrators/polling.py", "reads orchestrators/polling.py"),
    ],
)
def test_a_package_that_lacks_or_adds_a_file_is_caught(edit: str, complaint: str) -> None:
    problems = package_problems(_variant(edit))
    assert any(complaint in p for p in problems), problems


# -- .funcignore semantics, against git's own implementation of gitignore ---------------------

TREE = [
    "a.txt", "b.log", "keep.log", "deep/a.txt", "deep/er/b.log", "deep/er/c.md", "build/out.bin",
    "build/keep.txt", "src/app.py", "src/__pycache__/app.cpython-311.pyc", "src/tests/test_app.py",
    "tests/test_x.py", "docs/guide.md", "docs/img/a.png", "lib/docs/readme.md", "x/y/z/q.txt",
    "x/y/keep.txt", "#hash.txt", "!bang.txt", "f[1].txt", "data/2024/a.csv", "data/2025/b.csv",
    "name with space.txt",
]  # fmt: skip
RULES = """
# comment
*.log
!keep.log
/build/
!build/keep.txt
__pycache__/
src/tests
/docs
x/**/q.txt
name\\ with\\ space.txt
\\#hash.txt
\\!bang.txt
data/202[4]/
f\\[1\\].txt
deep/**/c.md
"""


def test_funcignore_rules_agree_with_git(tmp_path: Path) -> None:
    git = shutil.which("git")
    if git is None:
        pytest.skip("git is not installed")
    for rel in TREE:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rel)
    (tmp_path / ".gitignore").write_text(RULES)
    subprocess.run([git, "init", "-q", str(tmp_path)], check=True, timeout=30)
    listed = subprocess.run(
        [git, "-C", str(tmp_path), "ls-files", "--others", "--exclude-standard", "-z"],
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout.decode()
    by_git = {p for p in listed.split("\0") if p and p != ".gitignore"}
    ours = {p for p in package_files(tmp_path, parse_rules(RULES)) if not p.startswith(".git")}
    assert ours == by_git
    assert "keep.log" in ours and "build/out.bin" not in ours and "lib/docs/readme.md" in ours


def test_the_real_funcignore_agrees_with_git(tmp_path: Path) -> None:
    git = shutil.which("git")
    if git is None:
        pytest.skip("git is not installed")
    tracked = subprocess.run(
        [git, "-C", str(REPO_ROOT), "ls-files"], capture_output=True, text=True, check=True
    ).stdout.split()
    for rel in [*tracked, ".venv/pyvenv.cfg", "dist/api.zip", "a/__pycache__/m.pyc"]:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    shutil.copy(REPO_ROOT / ".funcignore", tmp_path / ".gitignore")
    subprocess.run([git, "init", "-q", str(tmp_path)], check=True, timeout=30)
    listed = subprocess.run(
        [git, "-C", str(tmp_path), "ls-files", "--others", "--exclude-standard"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.split("\n")
    by_git = {p for p in listed if p and p not in (".gitignore", ".funcignore")}
    ours = set(package_files(tmp_path, read_rules(REPO_ROOT)))
    assert ours == by_git


@pytest.mark.parametrize(
    ("pattern", "path", "is_dir", "ignored"),
    [
        ("docs", "lib/docs", True, True),  # no slash: any depth
        ("/docs", "lib/docs", True, False),  # leading slash: the root only
        ("build/", "build", False, False),  # trailing slash: folders only
        ("a/*.py", "a/b/c.py", False, False),  # * stops at /
        ("a/**/c.py", "a/c.py", False, True),  # /**/ may match no folder
        ("**/c.py", "x/y/c.py", False, True),
        ("a/**", "a", True, False),  # /** is what is inside, not the folder
        ("a?c", "abc", False, True),
        ("a?c", "a/c", False, False),
        ("[!a]bc", "xbc", False, True),
        ("[!a]bc", "abc", False, False),
    ],
)
def test_ignore_rule_semantics(pattern: str, path: str, is_dir: bool, ignored: bool) -> None:
    assert is_ignored(parse_rules(pattern), path, is_dir) is ignored


def test_azd_s_own_exclusions_apply_and_symlinks_are_refused(tmp_path: Path) -> None:
    for rel in ("host.json", "function_app.py", "local.settings.json", ".azure/env", "app.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("{}")
    (tmp_path / ".funcignore").write_text("*.md\n")
    assert package_files(tmp_path) == ["app.py", "function_app.py", "host.json"]
    (tmp_path / "linked").symlink_to(tmp_path / ".azure")
    with pytest.raises(PackageError, match="linked is a symbolic link"):
        package_files(tmp_path)
    (tmp_path / ".funcignore").write_text("*.md\n/linked\n")
    assert "linked" not in " ".join(package_files(tmp_path))


# -- the zip, and how it is deployed ------------------------------------------------------


def test_make_package_builds_a_reproducible_zip_of_those_files(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "infra/scripts/package_app.py"),
         "--out", str(tmp_path / "api.zip")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "files" in proc.stdout
    with zipfile.ZipFile(tmp_path / "api.zip") as zf:
        names = zf.namelist()
        assert zf.testzip() is None
    assert names == package_files(REPO_ROOT)
    unpacked = sorted(
        p.relative_to(tmp_path / "api").as_posix()
        for p in (tmp_path / "api").rglob("*")
        if p.is_file()
    )
    assert unpacked == names
    again = build(REPO_ROOT, tmp_path / "again.zip")
    assert again.zip_path.read_bytes() == (tmp_path / "api.zip").read_bytes()


def test_the_package_cli_says_what_is_wrong(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("")
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "infra/scripts/package_app.py"),
         "--root", str(tmp_path), "--out", str(tmp_path / "dist/api.zip")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.startswith("package: the package would lack host.json")
    assert not (tmp_path / "dist/api.zip").exists()


def test_azd_deploys_the_package_make_package_builds() -> None:
    project = yaml.safe_load((REPO_ROOT / "azure.yaml").read_text())
    api = project["services"]["api"]
    # azd zips the unpacked package folder as it is (no .funcignore in it) ...
    assert api["dist"] == "dist/api"
    assert api["hooks"]["prepackage"]["posix"]["run"] == "make package"
    assert api["remoteBuild"] is True  # ... and the remote build installs requirements.txt
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert "\npackage:" in makefile and "infra/scripts/package_app.py" in makefile
    # CI deploys the zip itself.
    deploy = yaml.safe_load((REPO_ROOT / ".github/workflows/deploy.yml").read_text())
    runs = [step.get("run", "") for step in deploy["jobs"]["deploy"]["steps"]]
    package = runs.index("make package")
    (deploy_step,) = [i for i, r in enumerate(runs) if r.startswith("azd deploy api")]
    assert package < deploy_step
    assert "--from-package dist/api.zip" in runs[deploy_step]


def test_dist_is_not_committed() -> None:
    assert "/dist/" in (REPO_ROOT / ".gitignore").read_text().split()
    # A stray build in dist/ never makes it into the next package.
    assert is_ignored(read_rules(REPO_ROOT), "dist", True)
    assert json.dumps(package_files(REPO_ROOT)).count("dist/") == 0
