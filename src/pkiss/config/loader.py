"""Reading a configuration: YAML text -> environment substitution -> validated `Config`.

Every failure becomes a :class:`ConfigError` whose lines name the YAML path of the problem;
pydantic's and PyYAML's own wording stays inside this module.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from pkiss.config import schema
from pkiss.config.checks import check
from pkiss.config.errors import ConfigError
from pkiss.config.schema import Config

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_BOOL_TAG = "tag:yaml.org,2002:bool"


class _Loader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys and reads only true/false as booleans.

    YAML 1.1 also reads yes/no/on/off as booleans, which would turn ``caller_id: off`` into
    false; pydantic still accepts those words where a boolean is expected.
    """

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL_TAG]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                continue  # the base class reports unhashable keys
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


_Loader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate the configuration file at `path`; ConfigError lists every problem."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = (error.strerror or str(error)) if isinstance(error, OSError) else "not UTF-8"
        raise ConfigError([f"{path}: cannot read: {reason}"]) from None
    return parse_config(text, source=str(path))


def load_admin(path: str | os.PathLike[str]) -> schema.Admin:
    """Only the ``admin`` section of the file at ``path``: what the CLI needs to reach a
    running node, even when another part of the file is broken (a reload is how the user
    learns that from the node)."""
    try:
        data = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_Loader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        data = None
    section = data.get("admin") if isinstance(data, dict) else None
    errors: list[str] = []
    section = _substitute(section or {}, "admin", os.environ, errors)
    if errors:
        raise ConfigError(errors)
    try:
        return schema.Admin.model_validate(section)
    except ValidationError as error:
        raise ConfigError([f"admin.{line}" for line in _translate(error)]) from None


def parse_config(
    text: str, source: str = "<string>", *, environ: Mapping[str, str] | None = None
) -> Config:
    """Validate configuration `text`; `source` names it in syntax errors.

    `${NAME}` (or `${NAME:-default}`) in any string value is replaced from `environ`, by default
    the process environment.
    """
    try:
        data = yaml.load(text, Loader=_Loader)  # a SafeLoader: builds plain data only
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise ConfigError([f"{where}: {error.problem or error.context}"]) from None
    except yaml.YAMLError as error:
        raise ConfigError([f"{source}: {error}"]) from None
    if data is None:
        raise ConfigError([f"{source}: the file is empty"])
    if not isinstance(data, dict):
        raise ConfigError([f"{source}: must be a mapping of sections (sbc, peers, ...)"])

    errors: list[str] = []
    data = _substitute(data, "", os.environ if environ is None else environ, errors)
    if errors:
        raise ConfigError(errors)
    try:
        config = Config.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_translate(error)) from None
    errors = check(config)
    if errors:
        raise ConfigError(errors)
    return config


def _join(path: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def _substitute(node: Any, path: str, environ: Mapping[str, str], errors: list[str]) -> Any:
    """`node` with ``${NAME}`` replaced in every string; unset variables are reported."""
    if isinstance(node, str):

        def replace(match: re.Match[str]) -> str:
            name, default = match[1], match[2]
            value = environ.get(name)
            if default is not None and not value:
                return default
            if value is None:
                errors.append(f"{path}: environment variable {name} is not set")
                return ""
            return value

        return _VARIABLE.sub(replace, node)
    if isinstance(node, dict):
        return {
            key: _substitute(value, _join(path, key), environ, errors)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_substitute(value, _join(path, i), environ, errors) for i, value in enumerate(node)]
    return node


def _known_keys() -> list[str]:
    models = [value for value in vars(schema).values() if isinstance(value, type)]
    return sorted(
        {
            field.alias or key
            for model in models
            if issubclass(model, BaseModel)
            for key, field in model.model_fields.items()
        }
    )


_KNOWN_KEYS = _known_keys()


def _describe(value: Any) -> str:
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "a mapping"


def _message(error: ErrorDetails) -> str:
    """A short human message for one pydantic error."""
    kind, value, ctx = error["type"], error["input"], error.get("ctx", {})
    if kind in ("value_error", "assertion_error"):
        return str(ctx.get("error", error["msg"]))
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        close = difflib.get_close_matches(str(error["loc"][-1]), _KNOWN_KEYS, n=1)
        return "unknown key" + (f" (did you mean {close[0]}?)" if close else "")
    if kind == "literal_error":
        expected = str(ctx.get("expected", "")).replace("'", "")
        return f"must be {expected}, not {value!r}"
    if kind == "string_type":
        quote = " (put it in quotes)" if isinstance(value, int | float | bool) else ""
        return f"must be a string, not {_describe(value)}{quote}"
    bounds = {
        "greater_than": "more than",
        "greater_than_equal": "at least",
        "less_than": "less than",
        "less_than_equal": "at most",
    }
    if kind in bounds:
        return f"must be {bounds[kind]} {next(iter(ctx.values()))}"
    if kind == "too_short":
        return "must not be empty"
    expected_type = {
        "int": "a whole number",
        "float": "a number",
        "bool": "true or false",
        "list": "a list",
        "tuple": "a list",
        "dict": "a mapping",
        "model": "a mapping",
        "model_attributes": "a mapping",
        "mapping": "a mapping",
    }
    for prefix, expected in expected_type.items():
        if kind in (f"{prefix}_type", f"{prefix}_parsing", f"{prefix}_from_float"):
            return f"must be {expected}, not {_describe(value)}"
    return error["msg"]


def _translate(error: ValidationError) -> list[str]:
    lines = []
    for detail in error.errors(include_url=False):
        path = ""
        for part in detail["loc"]:
            if part != "[key]":
                path = _join(path, part)
        lines.append(f"{path or '<top level>'}: {_message(detail)}")
    return lines
