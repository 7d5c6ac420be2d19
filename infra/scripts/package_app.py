"""Build the function app's deployment package: the files Azure Functions receives.

``python3 infra/scripts/package_app.py`` (``make package``) writes ``dist/api.zip`` and, beside
it, ``dist/api/`` holding the same files unpacked (``azure.yaml`` points azd at that folder,
so ``azd up`` and ``azd deploy --from-package dist/api.zip`` ship the same files).

What goes in is what azd puts in the zip it deploys to a Functions app:

- every file under the project root, except
- what ``.funcignore`` excludes, read with gitignore semantics (below), and
- ``.funcignore`` itself, ``local.settings.json`` and ``.azure/`` folders, which azd always
  leaves out of a Functions package.

No dependencies are packed: the Flex Consumption plan builds the app remotely and installs
``requirements.txt``, which is therefore in the package.

``.funcignore`` follows gitignore: blank lines and ``#`` comments are skipped; ``!`` re-includes;
a trailing ``/`` matches folders only; a pattern with a ``/`` other than a trailing one is
anchored at the project root, one without matches a name at any depth; ``*`` and ``?`` do not
cross ``/``; ``**/``, ``/**`` and ``/**/`` match any number of folders; ``[...]`` is a class;
``\\`` escapes; the last matching pattern wins; nothing inside an excluded folder can be
re-included. A symbolic link the rules keep is an error: what it points at would be deployed.

Standard library only, so it runs on any Python 3 before the project's virtualenv exists.
The zip is reproducible: entries sorted, fixed timestamps and permissions.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

IGNORE_FILE = ".funcignore"
# azd's Functions packaging leaves these out whatever .funcignore says.
ALWAYS_LEFT_OUT_FILES = frozenset({IGNORE_FILE, "local.settings.json"})
ALWAYS_LEFT_OUT_DIRS = frozenset({".azure"})
_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can carry


class PackageError(Exception):
    """The package cannot be built as asked (the message says what to change)."""


@dataclass(frozen=True)
class IgnoreRule:
    pattern: str
    negate: bool
    dir_only: bool
    regex: re.Pattern[str]

    def matches(self, path: str, is_dir: bool) -> bool:
        return (is_dir or not self.dir_only) and self.regex.fullmatch(path) is not None


def _glob_to_regex(glob: str) -> str:
    """One gitignore glob (no leading ``/``) as a regex over a ``/``-separated path."""
    out: list[str] = []
    i = 0
    n = len(glob)
    while i < n:
        c = glob[i]
        if c == "*":
            if glob.startswith("**", i):
                before_ok = i == 0 or glob[i - 1] == "/"
                after = glob[i + 2 : i + 3]
                if before_ok and after == "/":
                    out.append("(?:[^/]*/)*")  # **/ : zero or more folders
                    i += 3
                    continue
                if before_ok and i + 2 == n:
                    out.append(".*")  # trailing /** : everything inside
                    i += 2
                    continue
                out.append("[^/]*")  # any other ** is an ordinary *
                i += 2
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = glob.find("]", i + 2 if glob[i + 1 : i + 2] in ("!", "^") else i + 1)
            if end == -1:
                out.append(re.escape(c))
            else:
                body = glob[i + 1 : end]
                if body[:1] in ("!", "^"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = end
        elif c == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(glob[i]))
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def parse_rules(text: str) -> list[IgnoreRule]:
    """The rules of a ``.funcignore`` (gitignore syntax)."""
    rules: list[IgnoreRule] = []
    for raw in text.splitlines():
        line = raw.rstrip("\r")
        # Trailing spaces are dropped unless the last one is escaped.
        stripped = line.rstrip(" ")
        if stripped.endswith("\\") and len(stripped) < len(line):
            stripped += " "
        line = stripped
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        if negate or line.startswith(("\\!", "\\#")):  # ! negates; \! and \# are literal
            line = line[1:]
        dir_only = line.endswith("/")
        line = line.rstrip("/")
        if not line:
            continue
        anchored = "/" in line
        glob = line.lstrip("/")
        regex = _glob_to_regex(glob)
        if not anchored:
            regex = "(?:.*/)?" + regex
        rules.append(IgnoreRule(raw.strip(), negate, dir_only, re.compile(regex, re.DOTALL)))
    return rules


def is_ignored(rules: Iterable[IgnoreRule], path: str, is_dir: bool) -> bool:
    """Whether ``path`` (relative, ``/``-separated) is excluded; the last match decides."""
    ignored = False
    for rule in rules:
        if rule.matches(path, is_dir):
            ignored = not rule.negate
    return ignored


def read_rules(root: Path) -> list[IgnoreRule]:
    """The rules of ``root``'s ``.funcignore`` (none when there is no such file)."""
    path = root / IGNORE_FILE
    return parse_rules(path.read_text(encoding="utf-8")) if path.exists() else []


def package_files(root: Path, rules: list[IgnoreRule] | None = None) -> list[str]:
    """The relative (``/``-separated) paths of the files the package of ``root`` holds, sorted.

    ``rules`` default to ``root``'s ``.funcignore``.
    """
    if rules is None:
        rules = read_rules(root)
    found: list[str] = []

    def walk(folder: Path, prefix: str) -> None:
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            rel = f"{prefix}{entry.name}"
            is_dir = entry.is_dir(follow_symlinks=True)
            if is_dir and entry.name in ALWAYS_LEFT_OUT_DIRS:
                continue
            if not is_dir and entry.name in ALWAYS_LEFT_OUT_FILES:
                continue
            if is_ignored(rules, rel, is_dir):
                continue
            if entry.is_symlink():
                raise PackageError(
                    f"{rel} is a symbolic link: what it points at would be deployed. "
                    f"Exclude it in {IGNORE_FILE} or replace it with what it should ship."
                )
            if is_dir:
                walk(Path(entry.path), f"{rel}/")
            elif entry.is_file():
                found.append(rel)

    walk(root, "")
    return sorted(found)


@dataclass(frozen=True)
class Package:
    zip_path: Path
    files: tuple[str, ...]
    size_bytes: int  # of the zip
    content_bytes: int  # of the files, uncompressed


def build(root: Path, out: Path, *, unpacked: Path | None = None) -> Package:
    """Write the package of the project at ``root`` to ``out`` (a ``.zip``).

    With ``unpacked``, that folder is replaced by the zip's content, extracted from the zip.
    """
    root = root.resolve()
    files = package_files(root)
    if "host.json" not in files or "function_app.py" not in files:
        raise PackageError(
            f"the package would lack host.json or function_app.py: check {IGNORE_FILE}"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    content = 0
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for rel in files:
            data = (root / PurePosixPath(rel)).read_bytes()
            content += len(data)
            info = zipfile.ZipInfo(rel, date_time=_EPOCH)
            info.external_attr = 0o100644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    tmp.replace(out)
    if unpacked is not None:
        if unpacked.exists():
            shutil.rmtree(unpacked)
        with zipfile.ZipFile(out) as zf:
            zf.extractall(unpacked)
    return Package(out, tuple(files), out.stat().st_size, content)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = Path(__file__).resolve().parents[2]
    parser.add_argument("--root", type=Path, default=here, help="project root (default: repo)")
    parser.add_argument("--out", type=Path, default=here / "dist" / "api.zip")
    parser.add_argument("--no-unpacked", action="store_true", help="write only the zip")
    parser.add_argument("--list", action="store_true", help="print the files, build nothing")
    args = parser.parse_args(argv)
    try:
        if args.list:
            print("\n".join(package_files(args.root)))
            return 0
        unpacked = None if args.no_unpacked else args.out.with_suffix("")
        package = build(args.root, args.out, unpacked=unpacked)
    except (PackageError, OSError) as exc:
        print(f"package: {exc}", file=sys.stderr)
        return 1
    print(
        f"{package.zip_path}: {len(package.files)} files, "
        f"{package.size_bytes / 1024:.0f} KiB ({package.content_bytes / 1024:.0f} KiB unpacked)"
        + (f"; unpacked in {unpacked}" if unpacked else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
