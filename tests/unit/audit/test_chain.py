"""The audit hash chain as pure functions: any change, removal or reordering is caught."""

import dataclasses
import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audit.chain import GENESIS_HASH, ChainBreak, ChainLink, canonical_json, first_break

START = datetime(2026, 1, 1, tzinfo=UTC)


def build_chain(count: int, data=None) -> list[tuple[ChainLink, str]]:
    chain, prev = [], GENESIS_HASH
    for sequence in range(1, count + 1):
        link = ChainLink(
            sequence=sequence,
            created_at=START + timedelta(seconds=sequence),
            actor=f"user:person-{sequence}",
            tenant="demo",
            action="test.event",
            target=f"thing:{sequence}",
            data=data if data is not None else {"n": sequence},
            prev_hash=prev,
        )
        prev = link.compute_hash()
        chain.append((link, prev))
    return chain


def test_compute_hash__known_link__is_sha256_of_the_canonical_fields():
    link = build_chain(1)[0][0]
    document = {
        "sequence": 1,
        "created_at": "2026-01-01T00:00:01+00:00",
        "actor": "user:person-1",
        "tenant": "demo",
        "action": "test.event",
        "target": "thing:1",
        "data": {"n": 1},
        "prev_hash": GENESIS_HASH,
    }
    expected = hashlib.sha256(
        json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    assert link.compute_hash() == expected


def test_canonical_json__key_order_and_whitespace__do_not_matter():
    assert canonical_json({"b": 1, "a": [1, {"d": 2, "c": 3}]}) == b'{"a":[1,{"c":3,"d":2}],"b":1}'


def test_canonical_json__nan__is_refused():
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        canonical_json({"x": float("nan")})


def test_first_break__intact_chain__none():
    assert first_break(build_chain(5)) is None


def test_first_break__empty_chain__none():
    assert first_break([]) is None


@pytest.mark.parametrize(
    "change",
    [
        {"actor": "user:someone-else"},
        {"tenant": "other"},
        {"action": "test.other"},
        {"target": "thing:999"},
        {"data": {"n": 999}},
        {"created_at": START},
    ],
)
def test_first_break__one_field_of_an_event_changed__names_that_event(change):
    chain = build_chain(5)
    link, stored = chain[2]
    chain[2] = (dataclasses.replace(link, **change), stored)
    assert first_break(chain) == ChainBreak(3, "hash does not match the event's contents")


def test_first_break__hash_recomputed_after_a_change__next_event_breaks():
    chain = build_chain(5)
    link, _ = chain[2]
    forged = dataclasses.replace(link, data={"n": 999})
    chain[2] = (forged, forged.compute_hash())
    assert first_break(chain) == ChainBreak(4, "previous hash does not match the event before it")


def test_first_break__middle_event_removed__reports_the_gap():
    chain = build_chain(5)
    del chain[2]
    broken = first_break(chain)
    assert broken == ChainBreak(4, "sequence gap: expected #3, found #4")
    assert str(broken) == "audit event #4: sequence gap: expected #3, found #4"


def test_first_break__first_event_removed__next_event_does_not_start_the_chain():
    chain = build_chain(3)[1:]
    assert first_break(chain) == ChainBreak(2, "previous hash does not match the event before it")


def test_first_break__two_events_swapped__caught():
    chain = build_chain(4)
    chain[1], chain[2] = chain[2], chain[1]
    assert first_break(chain) == ChainBreak(3, "sequence gap: expected #2, found #3")


json_data = st.dictionaries(
    st.text(max_size=8),
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    max_size=5,
)


@given(json_data, st.integers(1, 8), st.data())
def test_first_break__any_data_changed_anywhere__caught_at_that_event(data, count, draw):
    chain = build_chain(count, data=data)
    index = draw.draw(st.integers(0, count - 1))
    link, stored = chain[index]
    changed = {**link.data, "tampered": True}
    chain[index] = (dataclasses.replace(link, data=changed), stored)
    assert first_break(chain) == ChainBreak(index + 1, "hash does not match the event's contents")
