"""Read a rules file: YAML text into a :class:`RuleFile`, every mistake with its line and column.

PyYAML composes the document into nodes that know their position; we turn the nodes into
plain data ourselves, keeping a map from each place in the document to its position, so that
a msgspec validation error (which names a path such as ``$.rules[3].match.text``) and the
compiler's own checks can point at the line and column of the mistake.

Plain scalars stay strings (only ``null``/``~``/empty become None) and msgspec converts them
by the type the field expects. That avoids YAML 1.1's surprises in a file people edit by hand:
``no`` is not False, ``9:30`` is not 570 and ``2026-10-01`` is not a date object.

msgspec stops at the first mistake it meets, so the document is converted in parts (the top
level, each named hours, each rule, the fallback), and a part with a mistake is converted
again without the key at fault, until it converts or nothing more can be taken away: every
structural mistake of the file is reported in one run.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path as FsPath
from typing import Any, TypeVar

import msgspec
import yaml

from services.router.errors import Path, Problem, RulesError
from services.router.rulefile import Actions, Hours, Rule, RuleFile

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_NULL_TAG = "tag:yaml.org,2002:null"
_MAX_BYTES = 4 * 1024 * 1024
"""A rules file is configuration; anything this large is a mistake, not a rules file."""


class Positions:
    """Where each value (and each mapping key) of the document starts, 1-based."""

    def __init__(self) -> None:
        self.values: dict[Path, tuple[int, int]] = {}
        self.keys: dict[Path, tuple[int, int]] = {}

    def at(self, path: Path, *, key: bool = False) -> tuple[int, int]:
        """The position of ``path``, or of its nearest ancestor that has one."""
        table = self.keys if key else self.values
        if path in table:
            return table[path]
        while path:
            path = path[:-1]
            if path in self.values:
                return self.values[path]
        return (0, 0)

    def problem(self, message: str, path: Path, *, key: bool = False) -> Problem:
        line, column = self.at(path, key=key)
        return Problem(message=message, path=path, line=line, column=column)


def _mark(node: yaml.Node) -> tuple[int, int]:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


def _to_data(node: yaml.Node, path: Path, pos: Positions, problems: list[Problem]) -> Any:
    pos.values[path] = _mark(node)
    if isinstance(node, yaml.ScalarNode):
        if node.tag == _NULL_TAG:  # the resolver gives plain null, ~ and empty values this tag
            return None
        return node.value
    if isinstance(node, yaml.SequenceNode):
        return [_to_data(child, (*path, i), pos, problems) for i, child in enumerate(node.value)]
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                line, column = _mark(key_node)
                problems.append(
                    Problem(message="a key must be plain text", path=path, line=line, column=column)
                )
                continue
            key = key_node.value
            if key in out:
                line, column = _mark(key_node)
                problems.append(
                    Problem(
                        message=f"duplicate key `{key}`",
                        path=(*path, key),
                        line=line,
                        column=column,
                    )
                )
                continue
            pos.keys[(*path, key)] = _mark(key_node)
            out[key] = _to_data(value_node, (*path, key), pos, problems)
        return out
    raise TypeError(f"unexpected YAML node {type(node).__name__}")  # pragma: no cover


_PATH_PART = re.compile(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]")


def _parse_msgspec_path(text: str) -> Path:
    """``$.rules[3].match.text`` → ("rules", 3, "match", "text"); ``[...]`` (a dict key) ends it."""
    parts: list[str | int] = []
    for m in _PATH_PART.finditer(text.removeprefix("$")):
        if m.group(1) is not None:
            parts.append(m.group(1))
        elif m.group(2) == "...":
            break
        else:
            parts.append(int(m.group(2)))
    return tuple(parts)


class _Mistake(msgspec.Struct, frozen=True, kw_only=True):
    problem: Problem
    at: Path
    """Relative to the part converted: the key to take away before trying again."""
    missing: bool = False


def _mistake(exc: msgspec.ValidationError, base: Path, pos: Positions) -> _Mistake:
    text = str(exc)
    message, sep, where = text.rpartition(" - at `")
    if not sep:
        message, where = text, "$`"
    at = _parse_msgspec_path(where.rstrip("`"))
    path = (*base, *at)
    unknown = re.match(r"Object contains unknown field `(.*)`$", message)
    if unknown:
        field = unknown.group(1)
        problem = pos.problem(f"unknown key `{field}`", (*path, field), key=True)
        return _Mistake(problem=problem, at=(*at, field))
    missing = re.match(r"Object missing required field `(.*)`$", message)
    if missing:
        problem = pos.problem(f"missing required key `{missing.group(1)}`", path)
        return _Mistake(problem=problem, at=at, missing=True)
    message = message.replace("`object`", "a mapping").replace("`array`", "a list")
    return _Mistake(problem=pos.problem(message[0].lower() + message[1:], path), at=at)


def _take_away(data: Any, at: Path) -> bool:
    """Remove the mapping key at ``at`` from ``data``; False when that is not a key (a list
    element, or the part itself), which ends the search in this part."""
    if not at or not isinstance(at[-1], str):
        return False
    parent = data
    for step in at[:-1]:
        try:
            parent = parent[step]
        except (KeyError, IndexError, TypeError):
            return False
    if not isinstance(parent, dict) or at[-1] not in parent:
        return False
    del parent[at[-1]]
    return True


T = TypeVar("T")


def _convert(
    data: Any, cls: type[T], base: Path, pos: Positions, problems: list[Problem]
) -> T | None:
    """``data`` as ``cls``; every mistake found is added to ``problems`` (then None)."""
    work = copy.deepcopy(data)
    taken: list[Path] = []
    while True:
        try:
            converted = msgspec.convert(work, cls, strict=False)
        except msgspec.ValidationError as exc:
            found = _mistake(exc, base, pos)
            if found.missing and any(t[:-1] == found.at for t in taken):
                return None  # a required key we took away ourselves: reported already
            problems.append(found.problem)
            if not _take_away(work, found.at):
                return None
            taken.append(found.at)
            continue
        return None if taken else converted


def _convert_file(data: dict[str, Any], pos: Positions) -> tuple[RuleFile | None, list[Problem]]:
    """The whole file, part by part, with every mistake of every part."""
    problems: list[Problem] = []
    shell = dict(data)
    hours, rules, fallback = data.get("hours"), data.get("rules"), data.get("fallback")
    # Each part that has the right shape is converted on its own below.
    if isinstance(hours, dict):
        shell["hours"] = {}
    if isinstance(rules, list):
        shell["rules"] = []
    if isinstance(fallback, dict):
        shell["fallback"] = {}
    top = _convert(shell, RuleFile, (), pos, problems)
    converted_hours = {}
    if isinstance(hours, dict):
        for name, spec in hours.items():
            converted_hours[name] = _convert(spec, Hours, ("hours", name), pos, problems)
    converted_rules = []
    if isinstance(rules, list):
        converted_rules = [
            _convert(rule, Rule, ("rules", i), pos, problems) for i, rule in enumerate(rules)
        ]
    actions = (
        _convert(fallback, Actions, ("fallback",), pos, problems)
        if isinstance(fallback, dict)
        else None
    )
    if problems or top is None or actions is None:
        return None, problems
    return msgspec.structs.replace(
        top,
        hours={k: v for k, v in converted_hours.items() if v is not None},
        rules=[r for r in converted_rules if r is not None],
        fallback=actions,
    ), problems


def parse(text: str | bytes, *, source: str = "<rules>") -> tuple[RuleFile, Positions]:
    """Parse and type-check a rules document; raises :class:`RulesError` with positions."""
    if len(text) > _MAX_BYTES:
        raise RulesError(source, [Problem(message=f"file larger than {_MAX_BYTES} bytes")])
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        reason = exc.problem or exc.context or "invalid YAML"
        raise RulesError(
            source, [Problem(message=f"invalid YAML: {reason}", line=line, column=column)]
        ) from None
    except yaml.YAMLError as exc:  # e.g. a byte sequence that is not UTF-8
        raise RulesError(source, [Problem(message=f"invalid YAML: {exc}")]) from None
    if node is None:
        raise RulesError(source, [Problem(message="the file is empty", line=1, column=1)])
    pos = Positions()
    problems: list[Problem] = []
    data = _to_data(node, (), pos, problems)
    if not isinstance(data, dict):
        raise RulesError(source, [*problems, pos.problem("the file must be a mapping of keys", ())])
    rule_file, found = _convert_file(data, pos)
    problems += found
    if problems or rule_file is None:
        problems.sort(key=lambda p: (p.line, p.column))
        raise RulesError(source, problems)
    return rule_file, pos


def read(path: str | FsPath) -> bytes:
    """The bytes of a rules file; a missing or unreadable file is a :class:`RulesError`."""
    try:
        return FsPath(path).read_bytes()
    except OSError as exc:
        raise RulesError(str(path), [Problem(message=f"cannot read: {exc.strerror}")]) from None
