"""Capability values: validation, the safest value, and tightening vs loosening. No database."""

import math

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from toggles.values import (
    CapabilitySpec,
    Direction,
    InvalidValue,
    RiskTier,
    ValueType,
    change_direction,
    safest_value,
    validate_value,
    value_text,
)

KEY = "test.setting"


def bool_spec(safe: bool = True) -> CapabilitySpec:
    return CapabilitySpec(KEY, ValueType.BOOL, RiskTier.HIGH, default=safe, safe_value=safe)


def int_spec(minimum=0, maximum=100, safer="lower") -> CapabilitySpec:
    return CapabilitySpec(
        KEY,
        ValueType.INT,
        RiskTier.LOW,
        default=int(minimum),
        minimum=float(minimum),
        maximum=float(maximum),
        safer=safer,
    )


def float_spec(minimum=0.0, maximum=1.0, safer="higher") -> CapabilitySpec:
    return CapabilitySpec(
        KEY,
        ValueType.FLOAT,
        RiskTier.LOW,
        default=float(maximum),
        minimum=float(minimum),
        maximum=float(maximum),
        safer=safer,
    )


def enum_spec(choices=("off", "reviewed", "full")) -> CapabilitySpec:
    return CapabilitySpec(
        KEY, ValueType.ENUM, RiskTier.CRITICAL, default=choices[0], choices=tuple(choices)
    )


def string_spec(max_length=10) -> CapabilitySpec:
    return CapabilitySpec(KEY, ValueType.STRING, RiskTier.LOW, default="", max_length=max_length)


# Strategies: specs as the catalog loader builds them, and values that fit them.

safer_sides = st.sampled_from(["lower", "higher"])


@st.composite
def int_specs(draw):
    low = draw(st.integers(-1_000_000, 1_000_000))
    high = draw(st.integers(low, low + 2_000_000))
    return int_spec(low, high, draw(safer_sides))


@st.composite
def float_specs(draw):
    bounds = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
    low = draw(bounds)
    high = draw(st.floats(low, low + 1e6, allow_nan=False, allow_infinity=False))
    return float_spec(low, high, draw(safer_sides))


enum_specs = st.lists(st.text(min_size=1, max_size=12), min_size=2, max_size=6, unique=True).map(
    enum_spec
)

ordered_specs = st.one_of(
    st.booleans().map(bool_spec),
    int_specs(),
    float_specs(),
    enum_specs,
)


def values_of(spec: CapabilitySpec):
    match spec.value_type:
        case ValueType.BOOL:
            return st.booleans()
        case ValueType.INT:
            return st.integers(int(spec.minimum), int(spec.maximum))
        case ValueType.FLOAT:
            return st.floats(spec.minimum, spec.maximum, allow_nan=False, allow_infinity=False)
        case ValueType.ENUM:
            return st.sampled_from(spec.choices)
        case ValueType.STRING:
            return st.text(max_size=spec.max_length)
    raise AssertionError(spec.value_type)


@st.composite
def spec_and_value(draw, specs=ordered_specs):
    spec = draw(specs)
    return spec, draw(values_of(spec))


@st.composite
def spec_and_two_values(draw, specs=ordered_specs):
    spec = draw(specs)
    return spec, draw(values_of(spec)), draw(values_of(spec))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=6,
)
any_specs = st.one_of(ordered_specs, st.integers(1, 30).map(string_spec))


# validate_value ------------------------------------------------------------------------


@given(spec_and_value(st.one_of(ordered_specs, st.integers(0, 30).map(string_spec))))
def test_validate_value__value_that_fits__returns_it_unchanged_and_stable(pair):
    spec, value = pair
    clean = validate_value(spec, value)
    assert clean == value
    assert validate_value(spec, clean) == clean
    assert type(validate_value(spec, clean)) is type(clean)


@given(any_specs, json_values)
def test_validate_value__any_json_value__returns_or_raises_invalid_value_only(spec, value):
    try:
        clean = validate_value(spec, value)
    except InvalidValue:
        return
    assert validate_value(spec, clean) == clean


@pytest.mark.parametrize(
    ("spec", "value", "message"),
    [
        (bool_spec(), 1, "'test.setting' takes true or false, not 1"),
        (bool_spec(), "true", "'test.setting' takes true or false, not 'true'"),
        (bool_spec(), None, "'test.setting' takes true or false, not None"),
        (int_spec(), True, "'test.setting' takes a whole number, not True"),
        (int_spec(), 1.5, "'test.setting' takes a whole number, not 1.5"),
        (int_spec(), "5", "'test.setting' takes a whole number, not '5'"),
        (int_spec(), math.nan, "'test.setting' takes a whole number, not nan"),
        (int_spec(), math.inf, "'test.setting' takes a whole number, not inf"),
        (int_spec(0, 100), -1, "'test.setting' must be at least 0, not -1"),
        (int_spec(0, 100), 101, "'test.setting' must be at most 100, not 101"),
        pytest.param(
            int_spec(0, 100), 10**30, f"'test.setting' must be at most 100, not {10**30}", id="huge"
        ),
        (float_spec(), False, "'test.setting' takes a number, not False"),
        (float_spec(), "0.5", "'test.setting' takes a number, not '0.5'"),
        (float_spec(), math.nan, "'test.setting' takes a finite number, not nan"),
        (float_spec(), -math.inf, "'test.setting' takes a finite number, not -inf"),
        pytest.param(
            float_spec(), 10**400, "'test.setting' takes a finite number", id="float-overflow"
        ),
        (float_spec(0.5, 1.0), 0.25, "'test.setting' must be at least 0.5, not 0.25"),
        (float_spec(0.0, 1.0), 2, "'test.setting' must be at most 1, not 2.0"),
        (enum_spec(), "partial", "'test.setting' takes one of off, reviewed, full, not 'partial'"),
        (enum_spec(), "OFF", "'test.setting' takes one of off, reviewed, full, not 'OFF'"),
        (enum_spec(), 0, "'test.setting' takes one of off, reviewed, full, not 0"),
        (enum_spec(), ["off"], "'test.setting' takes one of off, reviewed, full, not ['off']"),
        (string_spec(10), 10, "'test.setting' takes text, not 10"),
        (string_spec(10), "x" * 11, "'test.setting' takes at most 10 characters"),
    ],
)
def test_validate_value__value_that_does_not_fit__raises_invalid_value_saying_what_fits(
    spec, value, message
):
    with pytest.raises(InvalidValue) as error:
        validate_value(spec, value)
    assert str(error.value) == message


def test_validate_value__whole_float_for_int__returns_an_int():
    clean = validate_value(int_spec(), 7.0)
    assert clean == 7
    assert type(clean) is int


def test_validate_value__int_for_float__returns_a_float():
    clean = validate_value(float_spec(), 1)
    assert clean == 1.0
    assert type(clean) is float


def test_validate_value__text_at_max_length__is_accepted():
    assert validate_value(string_spec(3), "abc") == "abc"


# safest_value --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "safest"),
    [
        (bool_spec(safe=True), True),
        (bool_spec(safe=False), False),
        (int_spec(5, 90, safer="lower"), 5),
        (int_spec(5, 90, safer="higher"), 90),
        (float_spec(0.25, 0.75, safer="lower"), 0.25),
        (float_spec(0.25, 0.75, safer="higher"), 0.75),
        (enum_spec(("off", "reviewed", "full")), "off"),
        (string_spec(), None),
    ],
)
def test_safest_value__each_type__is_the_safe_end(spec, safest):
    value = safest_value(spec)
    assert value == safest
    assert type(value) is type(safest)


def test_safest_value__red_line__is_its_fixed_value():
    spec = CapabilitySpec(
        "redline.x", ValueType.BOOL, RiskTier.CRITICAL, is_red_line=True, fixed_value=False
    )
    assert safest_value(spec) is False


@given(ordered_specs)
def test_safest_value__any_spec__is_a_valid_value(spec):
    safest = safest_value(spec)
    assert validate_value(spec, safest) == safest


@given(spec_and_value())
def test_safest_value__moving_to_it__is_tightening_or_unchanged(pair):
    spec, value = pair
    direction = change_direction(spec, value, safest_value(spec))
    assert direction in (Direction.TIGHTENING, Direction.UNCHANGED)
    assert (direction == Direction.UNCHANGED) == (value == safest_value(spec))


@given(spec_and_value())
def test_safest_value__moving_away_from_it__is_never_tightening(pair):
    spec, value = pair
    direction = change_direction(spec, safest_value(spec), value)
    assert direction in (Direction.LOOSENING, Direction.UNCHANGED)
    assert (direction == Direction.UNCHANGED) == (value == safest_value(spec))


# change_direction ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "old", "new", "direction"),
    [
        (bool_spec(safe=True), False, True, Direction.TIGHTENING),
        (bool_spec(safe=True), True, False, Direction.LOOSENING),
        (bool_spec(safe=False), False, True, Direction.LOOSENING),
        (bool_spec(safe=True), True, True, Direction.UNCHANGED),
        (int_spec(safer="lower"), 50, 10, Direction.TIGHTENING),
        (int_spec(safer="lower"), 10, 50, Direction.LOOSENING),
        (int_spec(safer="higher"), 10, 50, Direction.TIGHTENING),
        (int_spec(safer="higher"), 50, 10, Direction.LOOSENING),
        (int_spec(), 5, 5.0, Direction.UNCHANGED),
        (float_spec(safer="higher"), 0.5, 0.75, Direction.TIGHTENING),
        (float_spec(safer="lower"), 0.5, 0.75, Direction.LOOSENING),
        (enum_spec(("off", "reviewed", "full")), "full", "reviewed", Direction.TIGHTENING),
        (enum_spec(("off", "reviewed", "full")), "off", "full", Direction.LOOSENING),
        (enum_spec(("off", "reviewed", "full")), "off", "off", Direction.UNCHANGED),
        (string_spec(), "a", "b", Direction.LOOSENING),
        (string_spec(), "", "a", Direction.LOOSENING),
        (string_spec(), "a", "a", Direction.UNCHANGED),
    ],
)
def test_change_direction__examples__classified(spec, old, new, direction):
    assert change_direction(spec, old, new) == direction


@given(spec_and_two_values())
def test_change_direction__reversed_change__is_the_opposite(triple):
    spec, old, new = triple
    forward, backward = change_direction(spec, old, new), change_direction(spec, new, old)
    opposite = {
        Direction.TIGHTENING: Direction.LOOSENING,
        Direction.LOOSENING: Direction.TIGHTENING,
        Direction.UNCHANGED: Direction.UNCHANGED,
    }
    assert backward == opposite[forward]
    assert (forward == Direction.UNCHANGED) == (old == new)


@given(st.integers(1, 30).map(string_spec), st.text(max_size=5), st.text(max_size=5))
def test_change_direction__any_text_change__loosens(spec, old, new):
    assume(old != new)
    assert change_direction(spec, old, new) == Direction.LOOSENING


@pytest.mark.parametrize(
    ("value", "text"),
    [(True, "on"), (False, "off"), (None, "—"), ("none", "none"), (0.5, "0.5"), (25, "25")],
)
def test_value_text__as_console_and_mail_show_it__no_value_is_never_the_choice_none(value, text):
    assert value_text(value) == text
