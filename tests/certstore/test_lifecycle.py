"""The lifecycle's pure rules: durations, status, renewal point, notice stages."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from certstore.errors import InvalidInput
from certstore.lifecycle import (
    ChainDates,
    Lifetimes,
    format_duration,
    notice_stage,
    parse_duration,
    renewal_due,
    stages_through,
    status,
)

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


def dates(days: int, origin: str = "generated") -> ChainDates:
    return ChainDates(id="chn_x", account_id="acc_x", origin=origin, not_before=T0,
                      not_after=T0 + days * DAY, created_at=T0)


@pytest.mark.parametrize(("text", "seconds"), [
    ("90d", 90 * 86400), ("12h", 43200), ("10m", 600), ("30s", 30), (" 1d ", 86400)])
def test_durations_parse(text: str, seconds: int) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "90", "d", "0d", "-1d", "1.5d", "1w", "1d2h", "9" * 12 + "s",
                                  "\uff11d", "1 d"])  # a fullwidth digit
def test_bad_durations_say_what_is_accepted(text: str) -> None:
    with pytest.raises(InvalidInput, match="such as 90d, 12h, 10m or 30s"):
        parse_duration(text)


@given(st.integers(min_value=1, max_value=10**8))
def test_format_is_the_inverse_of_parse(seconds: int) -> None:
    value = dt.timedelta(seconds=seconds)
    assert parse_duration(format_duration(value)) == value


def test_status_over_a_chains_life() -> None:
    chain, within = dates(90), 30 * DAY
    assert status(chain, T0 - DAY, within) == "not_yet_valid"
    assert status(chain, T0 + DAY, within) == "valid"
    assert status(chain, T0 + 60 * DAY, within) == "valid"
    assert status(chain, T0 + 61 * DAY, within) == "expiring"
    assert status(chain, T0 + 90 * DAY, within) == "expiring"
    assert status(chain, T0 + 91 * DAY, within) == "expired"


def test_generated_chains_renew_with_a_third_of_their_life_left() -> None:
    chain = dates(90)
    assert not renewal_due(chain, T0 + 60 * DAY, 0.33)  # 30 days left > 29.7
    assert renewal_due(chain, T0 + 61 * DAY, 0.33)
    assert renewal_due(chain, T0 + 200 * DAY, 0.33)  # overdue stays due
    assert not renewal_due(dates(90, origin="imported"), T0 + 89 * DAY, 0.33)


def test_the_renewal_point_counts_from_issuance_not_from_a_backdated_not_before() -> None:
    minute = dt.timedelta(minutes=1)
    issued = T0 + 5 * minute  # the CA backdates not_before by 5 minutes
    chain = ChainDates(id="chn_x", account_id="acc_x", origin="generated", not_before=T0,
                       not_after=issued + 3 * minute, created_at=issued)
    assert not renewal_due(chain, issued + minute, 0.33)  # 2 of 3 minutes left
    assert renewal_due(chain, issued + 2.1 * minute, 0.33)


def test_notice_stages_and_what_each_settles() -> None:
    chain, within = dates(90), 30 * DAY
    assert notice_stage(chain, T0 + 50 * DAY, within) is None
    assert notice_stage(chain, T0 + 61 * DAY, within) == "expiring"
    assert notice_stage(chain, T0 + 84 * DAY, within) == "7d"
    assert notice_stage(chain, T0 + 91 * DAY, within) == "expired"
    assert stages_through("expiring") == ("expiring",)
    assert stages_through("expired") == ("expiring", "7d", "expired")


@pytest.mark.parametrize(("kwargs", "says"), [
    ({"tls_validity": 398 * DAY}, "397d"),
    ({"tls_validity": dt.timedelta(0)}, "between 1s"),
    ({"signing_validity": 4000 * DAY}, "3650d"),
    ({"renew_fraction": 0.0}, "between 0 and 1"),
    ({"renew_fraction": 1.0}, "between 0 and 1"),
    ({"expiring_within": -DAY}, "positive"),
])
def test_lifetimes_refuse_what_cannot_work(kwargs: dict[str, object], says: str) -> None:
    with pytest.raises(InvalidInput, match=says):
        Lifetimes(**kwargs)  # type: ignore[arg-type]


def test_default_lifetimes_are_the_documented_ones() -> None:
    lifetimes = Lifetimes()
    assert lifetimes.validity("tls") == 90 * DAY
    assert lifetimes.validity("signing") == 365 * DAY
    assert lifetimes.renew_fraction == 0.33 and lifetimes.expiring_within == 30 * DAY
