"""Path templates as the Functions host reads them (pure).

Blob trigger paths: ``container/dir/{param}/{name}``. Each ``{param}`` matches greedily and may
span ``/`` (the real host's behaviour: ``raw/{source}/{name}`` on ``raw/a/b/c.csv`` gives
``source='a/b'``, ``name='c.csv'``). ``{name}.{ext}`` splits on the last dot.

HTTP routes: ``orders/{id}``, ``{id:int}``, optional ``{id?}``, catch-all ``{*rest}``; a
parameter matches one path segment unless it is a catch-all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_PARAM = re.compile(r"\{([^{}]+)\}")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class TemplateError(ValueError):
    """A template the host cannot use; the message names the template."""


@dataclass(frozen=True)
class BlobPathTemplate:
    container: str
    prefix: str
    regex: re.Pattern[str]
    params: tuple[str, ...]

    @classmethod
    def parse(cls, path: str) -> BlobPathTemplate:
        path = path.strip().lstrip("/")
        if "/" not in path:
            raise TemplateError(f"blob path {path!r} must be 'container/blob-pattern'")
        container, pattern = path.split("/", 1)
        if "{" in container:
            raise TemplateError(f"blob path {path!r}: the container name cannot be a parameter")
        if not pattern:
            raise TemplateError(f"blob path {path!r} has no blob pattern")
        params: list[str] = []
        out: list[str] = []
        pos = 0
        for m in _PARAM.finditer(pattern):
            name = m.group(1)
            if not _IDENT.match(name):
                raise TemplateError(f"blob path {path!r}: bad parameter {{{name}}}")
            if name in params:
                raise TemplateError(f"blob path {path!r}: parameter {{{name}}} appears twice")
            params.append(name)
            out.append(re.escape(pattern[pos : m.start()]))
            out.append(f"(?P<{name}>.+)")
            pos = m.end()
        out.append(re.escape(pattern[pos:]))
        first = pattern.find("{")
        prefix = pattern if first < 0 else pattern[:first]
        return cls(container, prefix, re.compile("^" + "".join(out) + "$", re.S), tuple(params))

    def match(self, container: str, blob_name: str) -> dict[str, str] | None:
        """The parameter values for ``blob_name`` in ``container``, or ``None``."""
        if container != self.container:
            return None
        m = self.regex.match(blob_name)
        return None if m is None else m.groupdict()


_CONSTRAINTS = {
    "int": r"-?\d+",
    "long": r"-?\d+",
    "alpha": r"[A-Za-z]+",
    "bool": r"(?i:true|false)",
    "guid": r"[0-9A-Fa-f]{8}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{12}",
    "double": r"-?\d+(?:\.\d+)?",
    "float": r"-?\d+(?:\.\d+)?",
    "decimal": r"-?\d+(?:\.\d+)?",
}


@dataclass(frozen=True)
class RouteTemplate:
    template: str
    regex: re.Pattern[str]
    params: tuple[str, ...]
    literal_segments: int

    @classmethod
    def parse(cls, template: str) -> RouteTemplate:
        t = template.strip().strip("/")
        params: list[str] = []
        parts: list[str] = []
        literal = 0
        segments = t.split("/") if t else []
        for i, seg in enumerate(segments):
            m = re.fullmatch(r"\{(\*?)([A-Za-z_][A-Za-z0-9_]*)(?::([a-z]+))?(\?)?\}", seg)
            if m is None:
                if "{" in seg or "}" in seg:
                    raise TemplateError(f"route {template!r}: unsupported segment {seg!r}")
                parts.append("/" + re.escape(seg))
                literal += 1
                continue
            star, name, constraint, optional = m.groups()
            if name in params:
                raise TemplateError(f"route {template!r}: parameter {{{name}}} appears twice")
            params.append(name)
            if star:
                if i != len(segments) - 1:
                    raise TemplateError(f"route {template!r}: a catch-all must be last")
                parts.append(f"(?:/(?P<{name}>.*))?")
                continue
            if constraint is not None and constraint not in _CONSTRAINTS:
                raise TemplateError(f"route {template!r}: unknown constraint {constraint!r}")
            inner = _CONSTRAINTS.get(constraint or "", r"[^/]+")
            piece = f"/(?P<{name}>{inner})"
            parts.append(f"(?:{piece})?" if optional else piece)
        regex = re.compile("^" + "".join(parts) + "/?$", re.I)
        return cls(template, regex, tuple(params), literal)

    def match(self, path: str) -> dict[str, str] | None:
        """Route values for ``path`` (relative to ``/api``, no query), or ``None``."""
        p = "/" + path.strip("/") if path.strip("/") else ""
        m = self.regex.match(p)
        if m is None:
            return None
        return {k: v for k, v in m.groupdict().items() if v is not None}
