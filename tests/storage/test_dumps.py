"""storage.engine.dumps: orjson where it writes what the standard library would, the standard
library for everything else; NaN and infinity refused wherever they sit."""

import dataclasses
import enum
import json
import math

import pytest

from cat_reward.storage.engine import dumps


@pytest.mark.parametrize(
    "value",
    [
        {"z": 1, "a": [1, 2.5, None, True], "t": ("x", "é\u2028\U0001f600"), "n": {"k": -0.0, "e": 1e-05}},
        {1: "int key", None: "none key", True: "bool key"},
        {"big": 2**70, "neg": -(2**64)},  # past orjson's 64 bits: the standard library writes them
        {"surrogate": "\ud800"},  # a lone surrogate (from a JSON escape): written escaped, as before
        [],
        "plain",
    ],
)
def test_reads_back_as_the_standard_library_wrote_it(value):
    text = dumps(value)
    assert json.loads(text) == json.loads(json.dumps(value, allow_nan=False))
    assert ", " not in text and '": ' not in text  # compact


@pytest.mark.parametrize(
    "value",
    [float("nan"), [1.0, float("inf")], {"a": {"b": [float("-inf")]}}, {"t": (0.5, float("nan"))}],
)
def test_nan_and_infinity_are_refused_wherever_they_sit(value):
    with pytest.raises(ValueError):
        dumps(value)


def test_what_json_cannot_hold_is_refused_as_before():
    @dataclasses.dataclass
    class Point:
        x: int

    class Color(str, enum.Enum):
        RED = "red"

    with pytest.raises(TypeError):
        dumps({"p": Point(1)})  # orjson would write a dataclass; the standard library refuses it
    assert json.loads(dumps({"c": Color.RED})) == {"c": "red"}  # a str subclass, as json writes it
    assert math.isclose(json.loads(dumps({"f": 0.1 + 0.2}))["f"], 0.1 + 0.2, rel_tol=0, abs_tol=0)
