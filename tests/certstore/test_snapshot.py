"""The selection snapshot: exact then one-label wildcard, binding then latest expiry."""

from __future__ import annotations

import time

from hypothesis import given, settings
from hypothesis import strategies as st

from certstore.names import allowed_for_domains
from certstore.snapshot import AccountEntry, ServedChain, Snapshot

NOW = time.time()
DAY = 86400.0


def chain(cid: str, account: str, *names: str, expires_in: float = 30 * DAY,
          starts_in: float = -DAY) -> ServedChain:
    return ServedChain(chain_id=cid, account_id=account, names=names,
                       not_before_ts=NOW + starts_in, not_after_ts=NOW + expires_in,
                       chain_pem=b"", sealed_key=b"", key_type="ecdsa-p256",
                       fingerprint_sha256=cid)


def entry(account: str, domains: set[str], *chains: ServedChain,
          bindings: dict[str, str] | None = None) -> AccountEntry:
    return AccountEntry(account_id=account, domains=frozenset(domains),
                        bindings=bindings or {}, chains=chains)


def test_exact_then_one_label_wildcard() -> None:
    exact = chain("exact", "a", "print.acme.com")
    wild = chain("wild", "a", "*.acme.com", "acme.com")
    snap = Snapshot.build([entry("a", {"acme.com", "print.acme.com"}, exact, wild)], seq=1)
    assert snap.select("print.acme.com") is exact
    assert snap.select("PRINT.Acme.com.") is exact  # SNI case and trailing dot
    assert snap.select("other.acme.com") is wild
    assert snap.select("acme.com") is wild
    assert snap.select("a.b.acme.com") is None  # one label only (RFC 6125 6.4.3)
    assert snap.select("acme.org") is None


def test_binding_beats_later_expiry_and_expired_chains_are_skipped() -> None:
    old = chain("old", "a", "acme.com", expires_in=10 * DAY)
    new = chain("new", "a", "acme.com", expires_in=300 * DAY)
    snap = Snapshot.build([entry("a", {"acme.com"}, old, new)], seq=1)
    assert snap.select("acme.com") is new
    bound = Snapshot.build([entry("a", {"acme.com"}, old, new, bindings={"acme.com": "old"})],
                           seq=2)
    assert bound.select("acme.com") is old
    # when the bound chain has expired, the next valid one serves
    assert bound.select("acme.com", now=NOW + 20 * DAY) is new
    assert bound.select("acme.com", now=NOW + 400 * DAY) is None
    future = chain("future", "a", "acme.com", starts_in=DAY)
    assert Snapshot.build([entry("a", {"acme.com"}, future)], seq=3).select("acme.com") is None


def test_binding_on_a_domain_applies_to_its_wildcard() -> None:
    w1 = chain("w1", "a", "*.acme.com", expires_in=10 * DAY)
    w2 = chain("w2", "a", "*.acme.com", expires_in=90 * DAY)
    snap = Snapshot.build([entry("a", {"acme.com"}, w1, w2, bindings={"acme.com": "w1"})], seq=1)
    assert snap.select("x.acme.com") is w1


def test_names_the_account_no_longer_owns_are_not_served() -> None:
    c = chain("c", "a", "acme.com", "print.acme.com", "*.acme.com")
    snap = Snapshot.build([entry("a", {"print.acme.com"}, c)], seq=1)
    assert snap.select("print.acme.com") is c
    assert snap.select("acme.com") is None
    assert snap.select("x.acme.com") is None
    assert snap.owner("print.acme.com") == "a"
    assert snap.owner("acme.com") is None


def test_with_accounts_replaces_only_that_account_and_keeps_old_snapshot_intact() -> None:
    a1 = chain("a1", "a", "acme.com")
    b1 = chain("b1", "b", "globex.com")
    first = Snapshot.build([entry("a", {"acme.com"}, a1), entry("b", {"globex.com"}, b1)],
                           seq=1)
    a2 = chain("a2", "a", "acme.com", expires_in=400 * DAY)
    second = first.with_accounts([entry("a", {"acme.com"}, a1, a2)], seq=2)
    assert second.select("acme.com") is a2 and second.select("globex.com") is b1
    assert first.select("acme.com") is a1  # readers of the old snapshot are unaffected
    third = second.with_accounts([], removed=["b"], seq=3)
    assert third.select("globex.com") is None and third.owner("globex.com") is None
    assert third.select("acme.com") is a2 and third.seq == 3


def test_domain_moving_between_accounts() -> None:
    a = chain("a", "A", "shared.com")
    b = chain("b", "B", "shared.com")
    snap = Snapshot.build([entry("A", {"shared.com"}, a), entry("B", set(), b)], seq=1)
    assert snap.select("shared.com") is a
    # the domain is removed from A, then given to B (two changes, applied in order)
    snap = snap.with_accounts([entry("A", set(), a)], seq=2)
    assert snap.select("shared.com") is None
    snap = snap.with_accounts([entry("B", {"shared.com"}, b)], seq=3)
    assert snap.select("shared.com") is b and snap.owner("shared.com") == "B"


def test_covers_is_the_serving_rule() -> None:
    c = chain("c", "a", "acme.com", "*.acme.com")
    assert c.covers("acme.com") and c.covers("x.acme.com")
    assert not c.covers("x.y.acme.com") and not c.covers("acme.org")


LABELS = st.sampled_from(["a", "b", "www", "print"])
PARENTS = st.sampled_from(["acme.com", "globex.org"])
NAMES = st.one_of(PARENTS, st.builds(lambda label, p: f"{label}.{p}", LABELS, PARENTS),
                  PARENTS.map(lambda p: "*." + p))
CHAINS = st.lists(st.tuples(st.lists(NAMES, min_size=1, max_size=3, unique=True),
                            st.integers(min_value=-5, max_value=50)), max_size=6)
DOMAINS = st.sets(st.one_of(PARENTS, st.builds(lambda label, p: f"{label}.{p}", LABELS,
                                               PARENTS)), max_size=5)


def _reference(chains: list[ServedChain], domains: frozenset[str], name: str,
               bindings: dict[str, str]) -> ServedChain | None:
    """Brute force: scan every chain, the way the rules are written."""
    def candidates(key: str) -> list[ServedChain]:
        found = [c for c in chains if key in c.names and allowed_for_domains(key, domains)
                 and c.valid_at(NOW)]
        bound = bindings.get(key.removeprefix("*."))
        return sorted(found, key=lambda c: (c.chain_id != bound, -c.not_after_ts, c.chain_id))

    exact = candidates(name)
    if exact:
        return exact[0]
    _, _, parent = name.partition(".")
    wild = candidates("*." + parent) if "." in parent else []
    return wild[0] if wild else None


@settings(max_examples=300)
@given(CHAINS, DOMAINS, st.one_of(NAMES.filter(lambda n: not n.startswith("*")),
                                  st.just("x.y.acme.com")), st.data())
def test_select_matches_brute_force_reference(spec: list[tuple[list[str], int]],
                                              domains: set[str], name: str,
                                              data: st.DataObject) -> None:
    chains = [chain(f"c{i}", "a", *names, expires_in=days * DAY)
              for i, (names, days) in enumerate(spec)]
    bindings = {}
    if chains and domains:
        bindings = {data.draw(st.sampled_from(sorted(domains))):
                    data.draw(st.sampled_from([c.chain_id for c in chains]))}
    snap = Snapshot.build([entry("a", domains, *chains, bindings=bindings)], seq=1)
    assert snap.select(name, now=NOW) == _reference(chains, frozenset(domains), name, bindings)


def test_selected_lists_the_chains_serving_an_account_now() -> None:
    exact = chain("exact", "a", "print.acme.com")
    wild = chain("wild", "a", "*.acme.com", "acme.com")
    loser = chain("loser", "a", "acme.com", expires_in=DAY)  # expires first: never chosen
    expired = chain("expired", "b", "b.com", expires_in=-1.0)
    snap = Snapshot.build([entry("a", {"acme.com", "print.acme.com"}, exact, wild, loser),
                           entry("b", {"b.com"}, expired)], seq=1)
    assert sorted(c.chain_id for c in snap.selected("a")) == ["exact", "wild"]
    assert snap.selected("b") == []  # only valid chains are served
    assert snap.selected("nobody") == []


ACCOUNT_PARENTS = {"A": "acme.com", "B": "globex.org", "C": "initech.net"}


@st.composite
def _account_state(draw: st.DrawFn, account: str, version: int) -> AccountEntry | None:
    """A state of one account (None: deleted); its domains stay under its own parent, as
    the store keeps one owner per domain."""
    if draw(st.booleans()) and draw(st.booleans()):
        return None
    parent = ACCOUNT_PARENTS[account]
    names = [parent, "*." + parent, *(f"{label}.{parent}" for label in ("a", "www", "print"))]
    domains = draw(st.sets(st.sampled_from([n for n in names if not n.startswith("*")]),
                           max_size=3))
    chains = [chain(f"{account}{version}c{i}", account,
                    *draw(st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True)),
                    expires_in=draw(st.integers(min_value=-5, max_value=50)) * DAY)
              for i in range(draw(st.integers(min_value=0, max_value=3)))]
    return entry(account, domains, *chains)


@settings(max_examples=200)
@given(st.data())
def test_incremental_updates_serve_what_a_fresh_build_serves(data: st.DataObject) -> None:
    state: dict[str, AccountEntry | None] = {}
    snap = Snapshot.empty()
    for step in range(data.draw(st.integers(min_value=1, max_value=8))):
        changed = data.draw(st.sets(st.sampled_from(sorted(ACCOUNT_PARENTS)), min_size=1))
        for account in changed:
            state[account] = data.draw(_account_state(account, step))
        present = [e for a in changed if (e := state[a]) is not None]
        snap = snap.with_accounts(present, removed=[a for a in changed if state[a] is None],
                                  seq=step + 1)
    fresh = Snapshot.build([e for e in state.values() if e is not None], seq=0)
    for parent in ACCOUNT_PARENTS.values():
        for name in (parent, f"a.{parent}", f"www.{parent}", f"print.{parent}",
                     f"new.{parent}", f"x.y.{parent}"):
            assert snap.select(name, now=NOW) == fresh.select(name, now=NOW), name
            assert snap.owner(name) == fresh.owner(name), name
    for account in ACCOUNT_PARENTS:
        assert snap.selected(account, now=NOW) == fresh.selected(account, now=NOW)


def test_of_two_chains_expiring_in_the_same_second_the_newer_is_served() -> None:
    """Two chains generated within one second carry the same not_after (certificate times
    have one-second precision): the one stored last is what the admin just asked for."""
    import dataclasses

    older = dataclasses.replace(chain("aa-older", "a", "a.com"), created_ts=NOW - 0.5)
    newer = dataclasses.replace(chain("zz-newer", "a", "a.com"), created_ts=NOW)
    for order in ((older, newer), (newer, older)):
        snap = Snapshot.build([entry("a", {"a.com"}, *order)], seq=1)
        assert snap.select("a.com") is newer
