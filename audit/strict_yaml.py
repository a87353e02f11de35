"""YAML for suites and policies: PyYAML's safe loader with the three things it lets through refused.

``yaml.safe_load`` constructs no objects, but it still

- expands aliases: nine anchors of nine aliases each ("billion laughs") are a few hundred bytes of file and
  a billion list items in memory; suites and policies have no need of them, so any alias is refused;
- takes the last of two equal keys in a mapping silently: a second ``question:`` further down a suite would
  change the audited question without a word, so a repeated key is refused with both lines named;
- recurses once per level of nesting, so a few thousand ``[`` end in a ``RecursionError``: nesting deeper
  than ``MAX_DEPTH`` is refused.

Every string scalar is also checked for characters that hide or reorder text (``audit.text_safety``), with
the line and column of the character, and dates are read as the text they are written as. PyYAML has no option
for any of these, hence the subclass; errors
name the file and the line, as ``<label>: line N, column C: <problem>``.
"""

from __future__ import annotations

from typing import Any

import yaml

from audit.text_safety import describe, first_unsafe

MAX_DEPTH = 64  # a suite nests five levels deep; no real file comes near this


class StrictYAMLError(Exception):
    """A refused construct at ``position`` (``line 3, column 7``, 1-based)."""

    def __init__(self, position: str, problem: str):
        super().__init__(problem)
        self.position, self.problem = position, problem


def _at(mark) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"


class StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` refusing aliases, repeated keys, deep nesting and hidden characters."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise StrictYAMLError(_at(event.start_mark), f"alias *{event.anchor}: anchors and aliases are not allowed (write the value out)")
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise StrictYAMLError(_at(self.peek_event().start_mark), f"nested deeper than {MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            first_line: dict[Any, int] = {}
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # an unhashable key is refused by PyYAML itself
                key = self.construct_object(key_node)
                line = key_node.start_mark.line + 1
                if key in first_line:
                    raise StrictYAMLError(_at(key_node.start_mark), f"key {key!r} repeats the key of line {first_line[key]}; each key may "
                                          "appear once in a mapping")
                first_line[key] = line
        return super().construct_mapping(node, deep)

    def construct_scalar(self, node):
        value = super().construct_scalar(node)
        index = first_unsafe(value) if isinstance(value, str) else None
        if index is not None:
            on_its_line = node.style is None and "\n" not in value[:index]  # a plain one-line scalar: exact column
            mark = node.start_mark
            position = (f"line {mark.line + 1}, column {mark.column + 1 + index}" if on_its_line else
                        f"line {mark.line + 1}: in the text that starts there, character {index + 1}")
            raise StrictYAMLError(position, f"{describe(value[index])}, an invisible or control character that "
                                                "can hide or reorder text in the report; remove it")
        return value


def _timestamp_as_text(loader: StrictLoader, node) -> str:
    """A date stays the text it was written as: suites and policies hold no dates, and PyYAML's own timestamp
    constructor raises ``ValueError`` on ``2024-02-30`` and ``AttributeError`` on an explicit ``!!timestamp``."""
    return loader.construct_scalar(node)


StrictLoader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_as_text)


def load(text: str, label: str, error: type[Exception]) -> Any:
    """The YAML document in ``text``; ``error('<label>: line N...: <problem>')`` on anything refused or malformed."""
    try:
        return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - StrictLoader is a SafeLoader
    except StrictYAMLError as exc:
        raise error(f"{label}: {exc.position}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise error(f"{label}:{where} is not valid YAML ({getattr(exc, 'problem', None) or exc})") from None


def read_bytes(path, label: str, error: type[Exception]) -> bytes:
    """The bytes of an input file, or ``error('<label>: cannot be read (...)')`` (a folder, no permission)."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise error(f"{label}: cannot be read ({exc.strerror or exc})") from None


def decode(data: bytes, label: str, error: type[Exception]) -> str:
    """``data`` as UTF-8 text (a leading byte-order mark dropped), else ``error`` naming the line and first bad byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise error(f"{label}: line {line}: is not UTF-8 text (byte {exc.start} is {data[exc.start]:#04x}); "
                    "expected UTF-8 (save it as UTF-8, or 'CSV UTF-8' from a spreadsheet)") from None
