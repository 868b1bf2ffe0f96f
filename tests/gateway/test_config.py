"""Configuration: the example loads, documents every field, and bad configs name the key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from gateway.config import (
    AdminConfig,
    Config,
    LifecycleConfig,
    ListenerConfig,
    TlsPolicy,
    load_config,
    parse_config,
)
from gateway.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config.example.yaml"


def test_example_loads_and_resolves_paths_against_its_directory() -> None:
    config = load_config(EXAMPLE)
    assert config.data_dir == ROOT / "var"
    assert config.master_key_path == ROOT / "var" / "master.key"
    assert [listener.kind for listener in config.listeners] == ["https", "ipps", "tcp"]


def test_example_documents_every_setting() -> None:
    text = EXAMPLE.read_text()
    keys = set(re.findall(r"^\s*#?\s*-?\s*([a-z_]+):", text, flags=re.M))
    for model in (Config, ListenerConfig, TlsPolicy, AdminConfig, LifecycleConfig):
        missing = set(model.model_fields) - keys
        assert not missing, f"config.example.yaml does not document {model.__name__}: {missing}"


def test_issue_minimal_config_is_valid(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("""
data_dir: ./var
listeners:
  - {name: web,  kind: https, bind: "127.0.0.1:8443", upstream: "http://127.0.0.1:8080"}
  - {name: print, kind: ipps, bind: "127.0.0.1:8631", upstream: "http://127.0.0.1:631"}
  - {name: terminals, kind: tcp, bind: "127.0.0.1:8700", upstream: "127.0.0.1:9700"}
admin:
  bind: "127.0.0.1:9443"
""")
    config = load_config(tmp_path / "c.yaml")
    assert config.admin is not None and config.admin.bind == "127.0.0.1:9443"
    assert config.listeners[0].tls.min_version == "1.2"


@pytest.mark.parametrize(("doc", "key"), [
    ({"data_dir": "v", "unknown": 1}, "unknown"),
    ({}, "data_dir"),
    ({"data_dir": "v", "listeners": [{"name": "a", "kind": "ftp", "bind": "127.0.0.1:1",
                                      "upstream": "http://h:1"}]}, "listeners.0.kind"),
    ({"data_dir": "v", "listeners": [{"name": "a", "kind": "https", "bind": "127.0.0.1",
                                      "upstream": "http://h:1"}]}, "listeners.0.bind"),
    ({"data_dir": "v", "listeners": [{"name": "a", "kind": "https", "bind": "127.0.0.1:1",
                                      "upstream": "ftp://h"}]}, "listeners.0.upstream"),
    ({"data_dir": "v", "listeners": [{"name": "a", "kind": "tcp", "bind": "127.0.0.1:1"}]},
     "listeners.0"),
    ({"data_dir": "v", "listeners": [{"name": "a", "kind": "https", "bind": "127.0.0.1:1",
                                      "upstream": "http://h:1", "idle_timeout_s": -1}]},
     "listeners.0.idle_timeout_s"),
    ({"data_dir": "v", "listeners": [{"name": "a", "kind": "https", "bind": "127.0.0.1:1",
                                      "upstream": "http://h:1", "upgrade_protocols": ["h2c"]}]},
     "listeners.0.upgrade_protocols"),
    ({"data_dir": "v", "listeners": [{"name": "a", "kind": "https", "bind": "127.0.0.1:1",
                                      "upstream": "http://h:1", "tunnel_idle_timeout_s": 0}]},
     "listeners.0.tunnel_idle_timeout_s"),
    ({"data_dir": "v", "listeners": [{"name": "a", "kind": "ipps", "bind": "127.0.0.1:1",
                                      "upstream": "http://h:1", "ipp_max_attributes_bytes": 10}]},
     "listeners.0.ipp_max_attributes_bytes"),
    ({"data_dir": "v", "admin": {"bind": "example.com:80"}}, "admin.bind"),
    ({"data_dir": "v", "ca": {"key_type": "dsa"}}, "ca.key_type"),
])
def test_bad_config_names_the_key(doc: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(doc, base_dir=Path("/"))
    assert info.value.key == key
    assert key in str(info.value)


def test_unparseable_files(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("data_dir: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "a.yaml")
    (tmp_path / "b.yaml").write_text("- just a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(tmp_path / "b.yaml")
    with pytest.raises(ConfigError, match="no config file"):
        load_config(tmp_path / "none.yaml")
    doc = yaml.safe_load("data_dir: v\nlisteners: [{name: a, kind: tcp, bind: '127.0.0.1:1', "
                         "upstream: '127.0.0.1:2'}, {name: a, kind: tcp, bind: '127.0.0.1:3', "
                         "upstream: '127.0.0.1:4'}]")
    with pytest.raises(ConfigError, match="unique"):
        parse_config(doc, base_dir=tmp_path)


@pytest.mark.parametrize(("lifecycle", "key", "says"), [
    ({"tls_validity": "90"}, "lifecycle.tls_validity", "such as 90d"),
    ({"tls_validity": "0d"}, "lifecycle.tls_validity", "positive"),
    ({"check_interval": "1w"}, "lifecycle.check_interval", "d, h, m or s"),
    ({"tls_validity": "400d"}, "lifecycle", "397d"),
    ({"renew_fraction": 1.5}, "lifecycle", "between 0 and 1"),
    ({"webhook_url": "ftp://x"}, "lifecycle.webhook_url", "http"),
    ({"expiring_within": "-3d"}, "lifecycle.expiring_within", "positive whole number"),
])
def test_bad_lifecycle_settings_name_the_key(lifecycle: dict[str, object], key: str,
                                             says: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config({"data_dir": "v", "lifecycle": lifecycle}, base_dir=Path("/tmp"))
    assert e.value.key is not None and e.value.key.startswith(key)
    assert says in str(e.value)


def test_lifecycle_settings_reach_the_store() -> None:
    config = parse_config({"data_dir": "v", "lifecycle": {
        "tls_validity": "3m", "signing_validity": "12h", "renew_fraction": 0.5,
        "check_interval": "30s", "expiring_within": "1d"}}, base_dir=Path("/tmp"))
    lifetimes = config.lifecycle.lifetimes()
    assert lifetimes.tls_validity.total_seconds() == 180
    assert lifetimes.signing_validity.total_seconds() == 12 * 3600
    assert lifetimes.renew_fraction == 0.5
    assert lifetimes.expiring_within.total_seconds() == 86400
    assert config.lifecycle.check_interval_s == 30


def _tls(kind: str = "https", **tls: object) -> dict[str, object]:
    return {"data_dir": "v", "listeners": [{"name": "a", "kind": kind, "bind": "127.0.0.1:1",
                                            "upstream": "http://h:1", "tls": tls}]}


@pytest.mark.parametrize(("doc", "words"), [
    (_tls(groups=["X25519", "P-256x"]), ["groups", "P-256x"]),
    (_tls(groups=[]), ["groups"]),
    (_tls(groups=["X25519\u00e9"]), ["groups"]),
    (_tls(ciphers="NO-SUCH-CIPHER"), ["ciphers", "NO-SUCH-CIPHER"]),
    (_tls(ciphersuites="TLS_AES_128_GCM_SHA256:TLS_NOPE"), ["ciphersuites", "TLS_NOPE"]),
    (_tls(ciphersuites="ECDHE-ECDSA-AES128-GCM-SHA256"), ["ciphersuites"]),
    (_tls(ciphersuites=""), ["ciphersuites", "empty"]),
    (_tls(ciphers=":"), ["ciphers", "empty"]),
    (_tls("ipps", min_version="1.3"), ["ipps", "TLS 1.2"]),
])
def test_a_tls_setting_openssl_refuses_fails_at_load(doc: dict[str, object],
                                                     words: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(doc, base_dir=Path("/"))
    assert info.value.key is not None and info.value.key.startswith("listeners.0")
    for word in words:
        assert word in str(info.value)


def test_tls_groups_and_suites_load() -> None:
    config = parse_config(_tls(groups=["X448", "secp521r1"],
                               ciphersuites="TLS_AES_256_GCM_SHA384"), base_dir=Path("/"))
    assert config.listeners[0].tls.groups == ("X448", "secp521r1")
def test_ipps_listener_settings_reach_the_proxy() -> None:
    from gateway.listener import proxy_settings

    doc = {"data_dir": "v", "listeners": [
        {"name": "p", "kind": "ipps", "bind": "127.0.0.1:1", "upstream": "http://h:631",
         "ipp_max_attributes_bytes": 4096},
        {"name": "w", "kind": "https", "bind": "127.0.0.1:2", "upstream": "http://h:80"}]}
    ipps, https = (proxy_settings(c) for c in parse_config(doc, base_dir=Path("/")).listeners)
    assert ipps.ipp and ipps.ipp_max_attributes_bytes == 4096
    assert ipps.routes[0].upstream_host  # the printer gets its own name in Host
    assert not https.ipp and https.ipp_max_attributes_bytes == 1 << 20
