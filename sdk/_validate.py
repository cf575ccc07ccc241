"""Client-side validation of metric names and values, done at the call site.

Each function returns values normalised to Python's int, float, bool, str or None, or raises
`MetricTypeError` / `MetricValueError` (also `TypeError` / `ValueError`) naming the metric and the
rule. Value classes: numbers (int and float mix; a list mixing them is stored as floats), bools,
strings; None joins any class. One metric name keeps one kind and one value class.
"""

from __future__ import annotations

import inspect
import numbers
import types
from collections.abc import Iterable
from typing import Any

from runwire.exceptions import MetricTypeError, MetricValueError
from runwire.limits import (
    INT64_MAX,
    INT64_MIN,
    MAX_COLUMNS,
    MAX_NAME_LENGTH,
    MAX_ROWS_PER_CALL,
    MAX_STRING_VALUE_LENGTH,
)

NUMBER, BOOLEAN, STRING = "number", "bool", "string"
_SCALARS = (int, float, bool, str, type(None))


class LogListError(MetricTypeError):
    """`run.log` was given a list (Azure ML's UserErrorException, also a TypeError)."""


def check_name(name: Any, what: str = "metric name") -> str:
    if type(name) is not str:
        raise MetricTypeError(f"{what} must be a str, not {type(name).__name__}: {name!r}")
    if not name:
        raise MetricValueError(f"{what} must not be empty")
    if len(name) > MAX_NAME_LENGTH:
        raise MetricValueError(
            f"{what} {name[:40]!r}... has {len(name)} characters; the limit is MAX_NAME_LENGTH = {MAX_NAME_LENGTH}"
        )
    if not name.isprintable() and any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise MetricValueError(f"{what} {name!r} contains control characters")
    return name


def value_class(value: Any) -> str | None:
    t = type(value)
    if t is bool:
        return BOOLEAN
    if t is int or t is float:
        return NUMBER
    if t is str:
        return STRING
    return None


def _unwrap(value: Any) -> Any:
    """numpy/torch scalars and one-element arrays/tensors to Python scalars; other numbers too."""
    item = getattr(value, "item", None)
    if item is not None and callable(item):
        size = getattr(value, "size", None)
        if callable(size):  # torch.Tensor.size() is a method; numel() gives the count
            numel = getattr(value, "numel", None)
            size = numel() if callable(numel) else None
        if size in (None, 1):
            try:
                return item()
            except (ValueError, TypeError, RuntimeError):
                return value
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, str):
        return str(value)
    return value


def check_scalar(metric: str, value: Any, where: str = "value") -> Any:
    """One scalar value, normalised. Raises naming `metric` (and `where`, e.g. a column)."""
    if type(value) not in _SCALARS:
        value = _unwrap(value)
    t = type(value)
    if t is int:
        if not INT64_MIN <= value <= INT64_MAX:
            raise MetricValueError(
                f"metric {metric!r}: {where} {value} is out of range; integers must fit in 64 bits "
                f"({INT64_MIN} to {INT64_MAX})"
            )
    elif t is str:
        if len(value) > MAX_STRING_VALUE_LENGTH:
            raise MetricValueError(
                f"metric {metric!r}: {where} is a string of {len(value)} characters; the limit is "
                f"MAX_STRING_VALUE_LENGTH = {MAX_STRING_VALUE_LENGTH}"
            )
    elif t not in _SCALARS:
        raise MetricTypeError(
            f"metric {metric!r}: {where} of type {type(value).__name__} is not supported; values must be "
            "int, float, bool, str or None (or a numpy/torch scalar or one-element array)"
        )
    return value


def _is_listlike_for_log(value: Any) -> bool:
    return (
        isinstance(value, list | range | types.GeneratorType)
        or inspect.isgeneratorfunction(value)
        or inspect.isgenerator(value)
    )


def check_log_value(metric: str, value: Any) -> Any:
    if _is_listlike_for_log(value):
        raise LogListError(f"run.log does not support list type. Use run.log_list instead (metric {metric!r})")
    if type(value) not in _SCALARS:
        shape = getattr(value, "shape", None)
        size = getattr(value, "size", None)
        numel = getattr(value, "numel", None)
        count = numel() if callable(numel) else (size if isinstance(size, int) else None)
        if shape is not None and count is not None and count != 1:
            raise MetricTypeError(
                f"metric {metric!r}: run.log takes one value, got an array of shape {tuple(shape)}; "
                "use run.log_list for a list or run.log_table for columns"
            )
    return check_scalar(metric, value)


def check_step(metric: str, step: Any) -> int | None:
    if step is None:
        return None
    if type(step) is not int:
        unwrapped = None if isinstance(step, bool) else _unwrap(step)
        if type(unwrapped) is not int:
            raise MetricTypeError(f"metric {metric!r}: step must be an int, not {type(step).__name__}")
        step = unwrapped
    if not INT64_MIN < step <= INT64_MAX:
        raise MetricValueError(f"metric {metric!r}: step {step} does not fit in 64 bits")
    return step


def common_class(metric: str, values: list, where: str) -> str | None:
    """The value class shared by `values` (None joins any), or raise."""
    kinds = set(map(type, values))
    kinds.discard(type(None))
    if not kinds:
        return None
    if kinds <= {int, float}:
        return NUMBER
    if kinds == {bool}:
        return BOOLEAN
    if kinds == {str}:
        return STRING
    names = ", ".join(sorted(k.__name__ for k in kinds))
    raise MetricTypeError(
        f"metric {metric!r}: {where} mixes {names}; a metric's values must be all numbers, all bools "
        "or all strings (None may appear anywhere)"
    )


def check_values(metric: str, values: Iterable[Any], where: str) -> list:
    """A list of scalars, normalised (numpy arrays are taken as lists)."""
    tolist = getattr(values, "tolist", None)
    if callable(tolist) and getattr(values, "ndim", 1) == 1:
        out = tolist()
    else:
        if getattr(values, "ndim", 1) != 1:
            raise MetricTypeError(f"metric {metric!r}: {where} must be one-dimensional")
        out = list(values)
    if len(out) > MAX_ROWS_PER_CALL:
        raise MetricValueError(
            f"metric {metric!r}: {where} has {len(out)} values; the limit is MAX_ROWS_PER_CALL = {MAX_ROWS_PER_CALL}"
        )
    if not set(map(type, out)) <= {int, float, str, bool, type(None)}:
        out = [_unwrap(v) for v in out]
    for i, v in enumerate(out):
        t = type(v)
        if t is float or v is None or t is bool:
            continue
        if t is int:
            if not INT64_MIN <= v <= INT64_MAX:
                raise MetricValueError(
                    f"metric {metric!r}: Number size out of range: {where} element {i} ({v}) does not fit in 64 bits"
                )
        elif t is str:
            if len(v) > MAX_STRING_VALUE_LENGTH:
                raise MetricValueError(
                    f"metric {metric!r}: {where} element {i} is a string of {len(v)} characters; "
                    f"the limit is MAX_STRING_VALUE_LENGTH = {MAX_STRING_VALUE_LENGTH}"
                )
        elif isinstance(v, list | tuple | dict | set):
            raise MetricTypeError(
                f"metric {metric!r}: {where} element {i} is a {t.__name__}; elements must be int, float, bool, "
                "str or None"
            )
        else:
            raise MetricTypeError(
                f"metric {metric!r}: Value of type {t.__name__} is not supported ({where} element {i}); "
                "elements must be int, float, bool, str or None"
            )
    return out


def check_list(metric: str, value: Any) -> list:
    if isinstance(value, str | bytes | dict) or not isinstance(value, Iterable):
        raise MetricTypeError(
            f"metric {metric!r}: log_list takes a list (or any iterable) of values, not {type(value).__name__}"
        )
    out = check_values(metric, value, "the list")
    if not out:
        raise MetricValueError(f"metric {metric!r}: log_list was given an empty list; log at least one value")
    return out


def check_row(metric: str, columns: dict[str, Any]) -> dict[str, list]:
    if not columns:
        raise MetricValueError(f"metric {metric!r}: log_row needs at least one column, e.g. log_row(name, x=1, y=2)")
    if len(columns) > MAX_COLUMNS:
        raise MetricValueError(f"metric {metric!r}: {len(columns)} columns; the limit is MAX_COLUMNS = {MAX_COLUMNS}")
    row: dict[str, list] = {}
    for col, value in columns.items():
        check_name(col, f"metric {metric!r}: column name")
        if isinstance(value, list | tuple):
            raise MetricValueError(
                f"Rows cannot contain list values, column {col} contains a list. (metric {metric!r})"
            )
        if getattr(value, "ndim", 0) not in (0, None) and getattr(value, "size", 1) != 1:
            raise MetricValueError(
                f"Rows cannot contain list values, column {col} contains a list. (metric {metric!r})"
            )
        row[col] = [check_scalar(metric, value, f"column {col!r}")]
    return row


def check_table(metric: str, value: Any) -> tuple[dict[str, list], int]:
    if not isinstance(value, dict):
        raise MetricTypeError(
            f"metric {metric!r}: log_table takes a dict of columns, e.g. {{'x': [1, 2], 'y': [3, 4]}}, "
            f"not {type(value).__name__}"
        )
    if not value:
        raise MetricValueError(f"metric {metric!r}: log_table was given an empty dict; give at least one column")
    if len(value) > MAX_COLUMNS:
        raise MetricValueError(f"metric {metric!r}: {len(value)} columns; the limit is MAX_COLUMNS = {MAX_COLUMNS}")
    table: dict[str, list] = {}
    first: tuple[str, int] | None = None
    for col, values in value.items():
        check_name(col, f"metric {metric!r}: column name")
        if isinstance(values, list | tuple) or (hasattr(values, "tolist") and getattr(values, "ndim", 0) == 1):
            column = check_values(metric, values, f"column {col!r}")
        else:
            column = [check_scalar(metric, values, f"column {col!r}")]
        if first is None:
            first = (col, len(column))
        elif len(column) != first[1]:
            raise MetricValueError(
                f"Columns must have the same length, column {first[0]} had length {first[1]}, however, "
                f"column {col} had length {len(column)}. (metric {metric!r})"
            )
        table[col] = column
    assert first is not None
    if first[1] == 0:
        raise MetricValueError(f"metric {metric!r}: log_table was given empty columns; give at least one row")
    return table, first[1]
