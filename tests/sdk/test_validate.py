"""Client-side validation: every bad input gets TypeError/ValueError naming the metric and the rule."""

from __future__ import annotations

import math

import numpy as np
import pytest

from runwire import _validate as v
from runwire.exceptions import UserErrorException
from runwire.limits import MAX_NAME_LENGTH, MAX_STRING_VALUE_LENGTH


def test_names():
    assert v.check_name("scale factor") == "scale factor"
    with pytest.raises(TypeError, match="must be a str"):
        v.check_name(3)
    with pytest.raises(ValueError, match="must not be empty"):
        v.check_name("")
    with pytest.raises(ValueError, match="MAX_NAME_LENGTH"):
        v.check_name("x" * (MAX_NAME_LENGTH + 1))
    with pytest.raises(ValueError, match="control characters"):
        v.check_name("a\x00b")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (1, 1),
        (0.5, 0.5),
        (True, True),
        ("Red", "Red"),
        (None, None),
        (np.int64(5), 5),
        (np.float32(0.1), 0.10000000149011612),
        (np.bool_(True), True),
        (np.array([2.5]), 2.5),
        (np.str_("x"), "x"),
    ],
)
def test_log_values_are_normalised(given, expected):
    out = v.check_log_value("m", given)
    assert out == expected and type(out) is type(expected)


def test_nan_and_inf_pass_through():
    assert math.isnan(v.check_log_value("m", float("nan")))
    assert v.check_log_value("m", float("-inf")) == float("-inf")


@pytest.mark.parametrize("given", [[1, 2], range(3), (i for i in range(2))])
def test_log_rejects_lists_with_azure_message(given):
    with pytest.raises(UserErrorException, match="run.log does not support list type. Use run.log_list instead"):
        v.check_log_value("acc", given)
    with pytest.raises(TypeError):
        v.check_log_value("acc", given)


@pytest.mark.parametrize("given", [{"a": 1}, (1, 2), object(), np.zeros(3)])
def test_log_rejects_non_scalars_naming_metric(given):
    with pytest.raises(TypeError, match="'acc'"):
        v.check_log_value("acc", given)


def test_int_range_and_string_length():
    with pytest.raises(ValueError, match="64 bits"):
        v.check_log_value("big", 2**63)
    with pytest.raises(ValueError, match="MAX_STRING_VALUE_LENGTH"):
        v.check_log_value("s", "x" * (MAX_STRING_VALUE_LENGTH + 1))


def test_steps():
    assert v.check_step("m", np.int32(3)) == 3
    with pytest.raises(TypeError, match="step must be an int"):
        v.check_step("m", 1.5)
    with pytest.raises(TypeError, match="step must be an int"):
        v.check_step("m", True)


def test_lists():
    assert v.check_list("f", (x for x in [0, 1, 1, 2])) == [0, 1, 1, 2]
    assert v.check_list("f", np.array([1.0, 2.0])) == [1.0, 2.0]
    with pytest.raises(ValueError, match="empty list"):
        v.check_list("f", [])
    with pytest.raises(TypeError, match="not str"):
        v.check_list("f", "abc")
    with pytest.raises(ValueError, match="Number size out of range"):
        v.check_list("f", [1, 2**64])
    with pytest.raises(TypeError, match="Value of type object is not supported"):
        v.check_list("f", [object()])
    with pytest.raises(TypeError, match="mixes"):
        v.common_class("f", [1, "a"], "the list")
    assert v.common_class("f", [1, 2.5, None], "the list") == v.NUMBER


def test_rows_and_tables():
    assert v.check_row("r", {"x": 1, "y": 0.4}) == {"x": [1], "y": [0.4]}
    with pytest.raises(ValueError, match="Rows cannot contain list values, column x contains a list."):
        v.check_row("r", {"x": [1]})
    with pytest.raises(ValueError, match="at least one column"):
        v.check_row("r", {})
    table, rows = v.check_table("t", {"a": [1, 2], "b": 3.0} | {"b": [3.0, 4.0]})
    assert rows == 2 and table == {"a": [1, 2], "b": [3.0, 4.0]}
    with pytest.raises(
        ValueError, match="Columns must have the same length, column a had length 2, however, column b had length 1."
    ):
        v.check_table("t", {"a": [1, 2], "b": [1]})
    with pytest.raises(ValueError, match="empty dict"):
        v.check_table("t", {})
    with pytest.raises(TypeError, match="dict of columns"):
        v.check_table("t", [1, 2])
    assert v.check_table("t", {"a": 5}) == ({"a": [5]}, 1)
