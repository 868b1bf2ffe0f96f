"""DNS challenge look-ups through a real DNS server on loopback, and the dns config."""

from __future__ import annotations

from pathlib import Path

import pytest

from certstore.errors import ChallengeLookupFailed
from gateway.config import parse_config
from gateway.dnscheck import txt_lookup
from gateway.errors import ConfigError
from tests.support.dns_server import silent_resolver, txt_server


async def test_txt_values_through_the_configured_resolver() -> None:
    with txt_server() as dns:
        dns.publish("_certgate-challenge.a.test", "certgate-tok", "y" * 600)
        lookup = txt_lookup((dns.address,), 2.0)
        values = await lookup("_certgate-challenge.A.test.")
        assert sorted(values) == ["certgate-tok", "y" * 600]  # 600 bytes: 3 strings, joined
        assert await lookup("_certgate-challenge.nothing.test") == []  # NXDOMAIN: none
        dns.publish("_certgate-challenge.huge.test", "z" * 5000)  # not a token: dropped
        assert await lookup("_certgate-challenge.huge.test") == []
        assert "_certgate-challenge.a.test" in dns.queries


async def test_a_resolver_that_never_answers_is_a_clear_error() -> None:
    with silent_resolver() as dead:
        with pytest.raises(ChallengeLookupFailed) as info:
            await txt_lookup((dead,), 0.3)("_certgate-challenge.a.test")
    assert dead in info.value.message and info.value.http_status == 503


@pytest.mark.parametrize("value", ["dns.example:53", "127.0.0.1:0", "127.0.0.1:99999",
                                   "127.0.0.1:x"])
def test_bad_resolvers_are_refused_at_load(value: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"data_dir": "var", "dns": {"resolvers": [value]}}, base_dir=tmp_path)
    assert info.value.key == "dns.resolvers" and value in str(info.value)


def test_resolver_forms(tmp_path: Path) -> None:
    config = parse_config({"data_dir": "var", "dns": {
        "resolvers": ["127.0.0.1:5353", "127.0.0.1", "[::1]:53", "::1"]}}, base_dir=tmp_path)
    assert config.dns.resolvers[0] == "127.0.0.1:5353"
    assert parse_config({"data_dir": "var"}, base_dir=tmp_path).dns.resolvers == ()
