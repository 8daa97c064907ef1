"""HTML forms to the admin API's body models and back: a form's text fields as the values a model validates
(numbers as numbers), and a model's refusal as one message per field, shown next to it."""

from __future__ import annotations

import math
import re
import types
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

_INTEGER = re.compile(r"[+-]?\d{1,30}")


def number(text: str) -> Any:
    """"7" -> 7, "4.5" -> 4.5; anything else stays text (the model's message then says what is wanted)."""
    if _INTEGER.fullmatch(text):
        return int(text)
    try:
        value = float(text)
    except ValueError:
        return text
    return value if math.isfinite(value) else text


def _numeric(annotation: Any) -> bool:
    """Whether a field's type is a number (int or float, optional or annotated), not bool."""
    if annotation in (int, float):
        return True
    origin = get_origin(annotation)
    if origin is Annotated:
        return _numeric(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return any(_numeric(arg) for arg in get_args(annotation) if arg is not type(None))
    return False


def model_values(model: type[BaseModel], form: Mapping[str, Any], *, blank_is_null: bool) -> dict[str, Any]:
    """The model's fields the form has, trimmed; numbers for numeric fields. A blank field is left out (the
    model's default applies), or, with `blank_is_null` (an edit form: every field is shown), null: the model
    then clears it or says that it may not be null."""
    values: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        raw = form.get(name)
        if not isinstance(raw, str):
            continue
        text = raw.strip()
        if not text:
            if blank_is_null:
                values[name] = None
            continue
        values[name] = number(text) if _numeric(info.annotation) else text
    return values


def field_errors(exc: ValidationError) -> dict[str, str]:
    """Each refused field's first message, by field name (`body` for the form as a whole)."""
    errors: dict[str, str] = {}
    for error in exc.errors(include_url=False):
        name = ".".join(str(part) for part in error["loc"]) or "body"
        errors.setdefault(name, _message(error["msg"]))
    return errors


def _message(text: str) -> str:
    return text.removeprefix("Value error, ")


def text_fields(form: Mapping[str, Any], names: Iterable[str]) -> dict[str, str]:
    """The form's values for `names`, as typed (re-shown in a form refused)."""
    return {name: value for name in names if isinstance(value := form.get(name), str)}


def parse_lines(text: str) -> dict[str, str]:
    """`name = value` per line (blank lines skipped) -> a mapping; ValueError naming the line that is not one."""
    mapping: dict[str, str] = {}
    for number_, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name, sep, value = line.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ValueError(f"line {number_}: write one `name = value` per line")
        mapping[name.strip()] = value.strip()
    return mapping


def format_lines(mapping: Mapping[str, Any] | None) -> str:
    return "\n".join(f"{name} = {value}" for name, value in (mapping or {}).items())
