"""Audit rows cannot be turned against their readers or flood the log (issue 10, section
4): text is escaped and bounded when written, and one key's refusals are rate-limited per
minute with a count."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from certstore.access import REFUSALS_PER_MINUTE
from certstore.audit import Actor, acting_as
from certstore.store import CertStore

START = dt.datetime(2026, 12, 3, 8, 0, 5, tzinfo=dt.UTC)


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
async def clocked(tmp_path: Path, master_key: bytes) -> AsyncIterator[tuple[CertStore, Clock]]:
    clock = Clock()
    store, _ = await CertStore.initialize(tmp_path / "c.sqlite", master_key, clock=clock,
                                          ca_key_type="ecdsa-p256")
    try:
        yield store, clock
    finally:
        await store.close()


async def test_refusals_are_rate_limited_per_key_and_minute(
        clocked: tuple[CertStore, Clock]) -> None:
    store, clock = clocked
    attacker = Actor(key_id="key_att", role="customer", account_id="acc_att")
    other = Actor(key_id="key_other", role="vendor", account_id="acc_other")
    with acting_as(attacker):
        for i in range(REFUSALS_PER_MINUTE + 7):
            clock.now = START + dt.timedelta(seconds=i)  # all within 08:00
            await store.record_failure("access.refused", "acc_att", f"GET /x/{i}", "404")
    with acting_as(other):  # another key is not limited by the attacker's flood
        await store.record_failure("chain.imported", "acc_other", "acc_other", "422")
    with acting_as(attacker):
        clock.now = START + dt.timedelta(minutes=1)  # a new minute: rows again
        await store.record_failure("access.refused", "acc_att", "GET /x/next", "404")
    rows = await store.audit_log(limit=1000)
    mine = [r for r in rows if r.key_id == "key_att"]
    refused = [r for r in mine if r.result == "refused"]
    (summary,) = [r for r in mine if r.action == "audit.rate_limited"]
    assert len(refused) == REFUSALS_PER_MINUTE + 1
    assert refused[0].target == "GET /x/next"
    assert (summary.count, summary.result, summary.account_id) == (7, "suppressed", "acc_att")
    assert "more than 20 refused requests" in (summary.detail or "")
    assert [r.count for r in refused] == [1] * len(refused)
    assert [r.action for r in rows if r.key_id == "key_other"] == ["chain.imported"]


async def test_audit_text_is_escaped_and_bounded(clocked: tuple[CertStore, Clock]) -> None:
    store, _ = clocked
    with acting_as(Actor(key_id="key_x", role="vendor", account_id="acc_x")):
        await store.record_failure("access.refused", "acc_x",
                                   "GET /api/v1/accounts/\x1b[2J\x07" + "a" * 1000,
                                   "404 not-found names=['\x1b]0;t\x07']")
    (row,) = await store.audit_log(limit=10)
    assert row.target is not None and row.detail is not None
    assert row.target.startswith("GET /api/v1/accounts/\\x1b[2J\\x07aaa")
    assert len(row.target) == 256 and row.target.endswith("...")
    assert row.detail == "404 not-found names=['\\x1b]0;t\\x07']"
    assert not any(ch in row.target + row.detail for ch in "\x1b\x07")
