"""The shared facts' pure table: single-use keys, facts taken once, live calls with leases,
every entry expiring (time passed in)."""

from __future__ import annotations

import pytest

from bridge.shared.table import AT_CAPACITY, DUPLICATE, MAX_VALUE_BYTES, StateTable


def test_a_key_is_claimed_once_until_it_lapses() -> None:
    table = StateTable()
    assert table.claim("token:a", 60.0, now=100.0) is True
    assert table.claim("token:a", 60.0, now=159.9) is False
    assert table.claim("token:b", 60.0, now=120.0) is True
    assert table.claim("token:a", 60.0, now=160.0) is True  # lapsed: a new claim


def test_a_fact_is_taken_once_and_lapses() -> None:
    table = StateTable()
    table.put("fact:outcome:CA1", b'{"then":"hangup"}', 600.0, now=0.0)
    assert table.take("fact:outcome:CA1", now=1.0) == b'{"then":"hangup"}'
    assert table.take("fact:outcome:CA1", now=1.0) is None
    table.put("fact:outcome:CA2", b"x", 600.0, now=0.0)
    table.put("fact:outcome:CA2", b"y", 600.0, now=10.0)  # the later one counts
    assert table.take("fact:outcome:CA2", now=609.0) == b"y"
    table.put("fact:outcome:CA3", b"z", 600.0, now=0.0)
    assert table.take("fact:outcome:CA3", now=600.0) is None


def test_the_table_is_bounded_in_entries_and_value_size() -> None:
    table = StateTable(max_entries=100)
    for n in range(250):
        table.put(f"fact:k:{n}", b"v", 600.0, now=float(n))
    assert table.take("fact:k:0", now=300.0) is None  # the oldest went first
    assert table.take("fact:k:249", now=300.0) == b"v"
    assert len(table._entries) <= 100
    with pytest.raises(ValueError, match="at most"):
        table.put("fact:k:big", b"x" * (MAX_VALUE_BYTES + 1), 600.0, now=0.0)


def test_lapsed_entries_are_dropped_as_new_ones_come() -> None:
    table = StateTable()
    for n in range(1000):
        table.claim(f"token:{n}", 60.0, now=float(n))
    # At t = 999 only the claims made after t = 939 are still held (a lease ends at its
    # expiry: the claim of t = 939 lapsed at 999).
    assert len(table._entries) == 60


def test_one_stream_per_call_sid_and_the_deployments_cap() -> None:
    table = StateTable()
    assert table.join("CA1", 2, 30.0, now=0.0) is None
    assert table.join("CA1", 2, 30.0, now=1.0) == DUPLICATE
    assert table.join("CA2", 2, 30.0, now=1.0) is None
    assert table.join("CA3", 2, 30.0, now=2.0) == AT_CAPACITY
    assert table.join("CA3", None, 30.0, now=2.0) is None  # no cap: only one per CallSid
    assert table.live_calls(now=2.0) == 3
    table.leave("CA3")
    table.leave("CA3")  # twice is harmless
    assert table.live_calls(now=2.0) == 2


def test_a_lease_not_renewed_lapses_so_a_dead_process_stops_counting() -> None:
    table = StateTable()
    table.join("CA1", 2, 30.0, now=0.0)
    table.join("CA2", 2, 30.0, now=0.0)
    table.renew(["CA1"], 30.0, now=20.0)  # CA1's process is alive; CA2's died
    assert table.live_calls(now=31.0) == 1
    assert table.join("CA3", 2, 30.0, now=31.0) is None
    assert table.join("CA2", 2, 30.0, now=31.0) == AT_CAPACITY
    assert table.holds("CA1") and not table.holds("CA2")
