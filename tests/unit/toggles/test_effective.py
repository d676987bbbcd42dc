"""Effective config: catalog defaults, overlaid by a version's values, red lines forced."""

from hypothesis import given
from hypothesis import strategies as st

from toggles.effective import effective_values, red_line_keys
from toggles.values import CapabilitySpec, RiskTier, ValueType

keys = st.from_regex(r"[a-z]{1,6}\.[a-z]{1,6}", fullmatch=True)
json_scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=8)


@st.composite
def catalogs(draw):
    """Distinct keys, each a red line (fixed value) or adjustable (a default)."""
    specs = []
    for key in draw(st.lists(keys, min_size=1, max_size=12, unique=True)):
        if draw(st.booleans()):
            specs.append(
                CapabilitySpec(
                    key,
                    ValueType.BOOL,
                    RiskTier.CRITICAL,
                    is_red_line=True,
                    fixed_value=draw(st.booleans()),
                )
            )
        else:
            specs.append(
                CapabilitySpec(key, ValueType.BOOL, RiskTier.LOW, default=draw(json_scalars))
            )
    return specs


@st.composite
def catalogs_and_values(draw):
    specs = draw(catalogs())
    known = [spec.key for spec in specs]
    stored = draw(
        st.dictionaries(st.sampled_from(known) | keys, json_scalars, max_size=len(known) + 3)
    )
    return specs, stored


@given(catalogs_and_values())
def test_effective_values__any_catalog_and_values__red_lines_forced_and_others_overlaid(pair):
    specs, stored = pair
    result = effective_values(specs, stored)
    assert list(result) == sorted(spec.key for spec in specs)
    for spec in specs:
        if spec.is_red_line:
            assert result[spec.key] is spec.fixed_value
        elif spec.key in stored:
            assert result[spec.key] == stored[spec.key]
        else:
            assert result[spec.key] == spec.default


@given(catalogs())
def test_effective_values__values_set_every_red_line_the_other_way__still_fixed(specs):
    flipped = {spec.key: not spec.fixed_value for spec in specs if spec.is_red_line}
    result = effective_values(specs, flipped)
    assert {key: result[key] for key in flipped} == {
        key: not value for key, value in flipped.items()
    }


def test_effective_values__example__defaults_overlaid_and_red_line_forced():
    specs = [
        CapabilitySpec(
            "a.red", ValueType.BOOL, RiskTier.CRITICAL, is_red_line=True, fixed_value=False
        ),
        CapabilitySpec("b.on", ValueType.BOOL, RiskTier.LOW, default=True),
        CapabilitySpec("c.limit", ValueType.INT, RiskTier.LOW, default=10),
    ]
    values = {"a.red": True, "c.limit": 3, "z.unknown": 1}
    assert effective_values(specs, values) == {"a.red": False, "b.on": True, "c.limit": 3}


@given(catalogs())
def test_red_line_keys__any_catalog__exactly_the_red_lines_sorted(specs):
    assert red_line_keys(specs) == sorted(spec.key for spec in specs if spec.is_red_line)
