"""Reading an ``MLTable`` folder locally: the subset of the MLTable spec pipelines use.

An ``mltable`` input is a folder with an ``MLTable`` YAML file listing ``paths`` (``file``,
``folder`` or ``pattern``, relative to the folder) and ``transformations``. With a ``read_*``
transformation it is a table; without one, a list of files. Supported transformations:
``read_delimited`` (delimiter, header, encoding, include_path_column), ``read_parquet``,
``read_json_lines``, ``extract_columns_from_partition_format``, ``drop_columns``,
``keep_columns``, ``skip`` and ``take``. Anything else is refused with a line naming it, so a
table never loads differently here than in Azure ML without saying so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adapters.errors import BadInputError

if TYPE_CHECKING:
    import pandas as pd

READERS = ("read_delimited", "read_parquet", "read_json_lines")
_FORMAT_FIELD = re.compile(r"\{([^{}:]+)(?::[^{}]*)?\}")
_HEADERS = {"all_files_same_headers", "from_first_file", "all_files_different_headers"}


@dataclass(frozen=True)
class MLTable:
    folder: Path
    files: list[Path]
    transformations: list[tuple[str, Any]] = field(default_factory=list)

    @property
    def is_tabular(self) -> bool:
        return any(name in READERS for name, _ in self.transformations)

    def total_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.files)


def _steps(raw: Any) -> list[tuple[str, Any]]:
    steps: list[tuple[str, Any]] = []
    for item in raw or []:
        if isinstance(item, str):
            steps.append((item, {}))
        elif isinstance(item, dict) and len(item) == 1:
            name, options = next(iter(item.items()))
            steps.append((str(name), options if options is not None else {}))
        else:
            raise BadInputError(f"MLTable transformation {item!r} is not understood")
    return steps


def _files(folder: Path, entries: Any) -> list[Path]:
    files: list[Path] = []
    for entry in entries or []:
        if not isinstance(entry, dict) or len(entry) != 1:
            raise BadInputError(f"MLTable path entry {entry!r} is not understood")
        kind, value = next(iter(entry.items()))
        text = str(value)
        if "://" in text:
            raise BadInputError(
                f"MLTable in {folder} reads {text}, which the local executor does not download; "
                "point its paths at local files"
            )
        if kind == "file":
            files.append((folder / text).resolve())
        elif kind == "folder":
            target = (folder / text).resolve()
            if not target.is_dir():
                raise BadInputError(
                    f"MLTable in {folder} lists folder {text}, which does not exist",
                    code="missing_input",
                )
            files.extend(sorted(p for p in target.rglob("*") if p.is_file()))
        elif kind == "pattern":
            pattern = text.removeprefix("./")
            matched = sorted(p.resolve() for p in folder.glob(pattern) if p.is_file())
            if not matched:
                raise BadInputError(
                    f"MLTable in {folder}: pattern {text} matches no file", code="missing_input"
                )
            files.extend(matched)
        else:
            raise BadInputError(f"MLTable path kind {kind!r} is not supported")
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise BadInputError(f"MLTable in {folder} lists {missing[0]}, which does not exist")
    return [f for f in files if f.name != "MLTable"]


def read(folder: str | Path) -> MLTable:
    """The ``MLTable`` file in ``folder``; ``BadInputError`` when absent or unsupported."""
    import yaml

    root = Path(folder).resolve()
    spec_file = root / "MLTable" if root.is_dir() else root
    if not spec_file.is_file():
        raise BadInputError(f"mltable input {root} has no MLTable file", code="missing_input")
    try:
        doc = yaml.safe_load(spec_file.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise BadInputError(f"{spec_file}: invalid YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise BadInputError(f"{spec_file}: not an MLTable mapping")
    base = spec_file.parent
    table = MLTable(base, _files(base, doc.get("paths")), _steps(doc.get("transformations")))
    known = {*READERS, "extract_columns_from_partition_format", "drop_columns", "keep_columns"}
    for name, _ in table.transformations:
        if name not in known | {"skip", "take"}:
            raise BadInputError(
                f"MLTable transformation {name!r} in {spec_file} is not supported locally"
            )
    return table


def _columns(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        value = value.get("columns", [])
    return [str(v) for v in value or []]


def _partition_regex(partition_format: str) -> re.Pattern[str]:
    pattern = ""
    last = 0
    for match in _FORMAT_FIELD.finditer(partition_format):
        pattern += re.escape(partition_format[last : match.start()])
        pattern += f"(?P<{match.group(1)}>[^/]+?)"
        last = match.end()
    pattern += re.escape(partition_format[last:])
    return re.compile(r"(?:^|/)" + pattern.lstrip("/") + "$")


def _read_file(path: Path, reader: str, options: dict[str, Any]) -> pd.DataFrame:
    import pandas as pd

    if reader == "read_parquet":
        return pd.read_parquet(path)
    encoding = str(options.get("encoding", "utf8")).replace("utf8", "utf-8")
    if reader == "read_json_lines":
        return pd.read_json(path, lines=True, encoding=encoding)
    header = str(options.get("header", "all_files_same_headers"))
    return pd.read_csv(
        path,
        sep=str(options.get("delimiter", ",")),
        header=0 if header in _HEADERS else None,
        encoding=encoding,
    )


def path_columns(table: MLTable, path: Path) -> dict[str, str]:
    """The columns ``extract_columns_from_partition_format`` derives from file ``path``."""
    values: dict[str, str] = {}
    for name, extra in table.transformations:
        if name == "extract_columns_from_partition_format":
            fmt = extra.get("partition_format") if isinstance(extra, dict) else extra
            relative = path.relative_to(table.folder).as_posix()
            match = _partition_regex(str(fmt)).search(relative)
            if match is None:
                raise BadInputError(f"MLTable partition format {fmt!r} does not match {relative}")
            values.update(match.groupdict())
    return values


def file_constant_columns(table: MLTable) -> set[str]:
    """The table's columns that come from its files' paths, so each file holds one value of
    them: the partition format's fields that the column drops and keeps leave in place. Empty
    when ``skip`` or ``take`` make a file's rows depend on the files before it."""
    names: set[str] = set()
    for name, extra in table.transformations:
        if name in ("skip", "take"):
            return set()
        if name == "extract_columns_from_partition_format":
            fmt = extra.get("partition_format") if isinstance(extra, dict) else extra
            names.update(m.group(1) for m in _FORMAT_FIELD.finditer(str(fmt)))
        elif name == "drop_columns":
            names -= set(_columns(extra))
        elif name == "keep_columns":
            names &= set(_columns(extra))
    return names


def to_frame(table: MLTable, files: list[Path] | None = None) -> pd.DataFrame:
    """The table as one DataFrame (every file read, transformations applied in order); with
    ``files``, the table made of those of its files only."""
    import pandas as pd

    if not table.is_tabular:
        raise BadInputError(f"MLTable in {table.folder} has no read_* transformation: not a table")
    reader, options = next((n, o) for n, o in table.transformations if n in READERS)
    opts = options if isinstance(options, dict) else {}
    frames = []
    for path in table.files if files is None else files:
        frame = _read_file(path, reader, opts)
        if opts.get("include_path_column"):
            frame["Path"] = str(path)
        for column, value in path_columns(table, path).items():
            frame[column] = value
        frames.append(frame)
    result = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    del frames
    for name, extra in table.transformations:
        if name == "drop_columns":
            result = result.drop(columns=[c for c in _columns(extra) if c in result.columns])
        elif name == "keep_columns":
            result = result[[c for c in _columns(extra) if c in result.columns]]
        elif name == "skip":
            result = result.iloc[int(extra) :]
        elif name == "take":
            result = result.iloc[: int(extra)]
    return result.reset_index(drop=True)
