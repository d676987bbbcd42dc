"""The audit hash chain: pure functions, no database.

Each event's hash covers its own fields and the previous event's hash, so changing,
removing or reordering any event breaks every hash after it.
"""

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

GENESIS_HASH = "0" * 64


def canonical_json(value: Any) -> bytes:
    """JSON with sorted keys and no whitespace: the same value always gives the same bytes."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


@dataclass(frozen=True)
class ChainLink:
    sequence: int
    created_at: datetime
    actor: str
    tenant: str
    action: str
    target: str
    data: dict
    prev_hash: str

    def compute_hash(self) -> str:
        payload = {
            "sequence": self.sequence,
            "created_at": self.created_at.isoformat(),
            "actor": self.actor,
            "tenant": self.tenant,
            "action": self.action,
            "target": self.target,
            "data": self.data,
            "prev_hash": self.prev_hash,
        }
        return hashlib.sha256(canonical_json(payload)).hexdigest()


@dataclass(frozen=True)
class ChainBreak:
    sequence: int
    reason: str

    def __str__(self) -> str:
        return f"audit event #{self.sequence}: {self.reason}"


def first_break(links_with_hashes) -> ChainBreak | None:
    """Walk (link, stored_hash) pairs in sequence order; return the first that does not verify."""
    expected_prev = GENESIS_HASH
    expected_sequence = None
    for link, stored_hash in links_with_hashes:
        if expected_sequence is not None and link.sequence != expected_sequence:
            return ChainBreak(
                link.sequence,
                f"sequence gap: expected #{expected_sequence}, found #{link.sequence}",
            )
        if link.prev_hash != expected_prev:
            return ChainBreak(link.sequence, "previous hash does not match the event before it")
        if link.compute_hash() != stored_hash:
            return ChainBreak(link.sequence, "hash does not match the event's contents")
        expected_prev = stored_hash
        expected_sequence = link.sequence + 1
    return None
