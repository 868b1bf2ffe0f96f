"""Configuration: the example loads, documents every field, and bad configs name the key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from gateway.config import (
    AdminConfig,
    CaConfig,
    Config,
    DnsConfig,
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
    ({"context_cache_size": 0}, "context_cache_size"),
    ({"admin": {"bnd": "127.0.0.1:1"}}, "admin.bnd"),
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
    ({"data_dir": "v", "admin": {"crypto_lowest_priority": "maybe"}},
     "admin.crypto_lowest_priority"),
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


def test_every_setting_has_a_default(tmp_path: Path) -> None:
    """config.example.yaml says so: an empty file and ``listeners: []`` are whole configs."""
    for text in ("", "listeners: []\n"):
        (tmp_path / "c.yaml").write_text(text)
        config = load_config(tmp_path / "c.yaml")
        assert config.data_dir == tmp_path / "var"  # ./var beside the config file
        assert config.database_location == tmp_path / "var" / "certgate.sqlite"
    for model in (Config, TlsPolicy, AdminConfig):
        required = [n for n, f in model.model_fields.items() if f.is_required()]
        assert required == [], f"{model.__name__} has settings without a default: {required}"


@pytest.mark.parametrize(("text", "wanted"), [
    ("data_dir: [unclosed\n", ["not valid YAML at line 2", "fix the syntax"]),
    ("listeners:\n  - name: a\n   kind: x\n", ["line 3, column 4"]),
    ("admn: {bind: '127.0.0.1:1'}\n", ["unknown setting 'admn'", "did you mean 'admin'?",
                                         "remove it"]),
    ("listeners: [{name: a, kind: https, bind: '127.0.0.1:1', upstrem: 'http://h:1'}]\n",
     ["'listeners.0.upstrem'", "did you mean 'upstream'?"]),
    ("context_cache_size: -3\n", ["context_cache_size: Input should be greater than 0",
                                   "(got -3)", "config.example.yaml"]),
])
def test_errors_are_one_line_naming_file_key_and_fix(tmp_path: Path, text: str,
                                                     wanted: list[str]) -> None:
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "c.yaml")
    message = str(info.value)
    assert "\n" not in message and str(tmp_path / "c.yaml") in message
    for part in wanted:
        assert part in message, message


def test_example_shows_every_default() -> None:
    """Each value config.example.yaml shows is the code's default, except the settings that
    the sample sets up on purpose (its listeners' identity and the admin API's presence)."""
    doc = yaml.safe_load(EXAMPLE.read_text())
    for name, field in Config.model_fields.items():
        if name in ("listeners", "admin", "ca", "lifecycle", "dns"):
            continue
        default = field.get_default()
        shown = doc[name]
        assert (str(default) if name == "data_dir" else default) == (
            shown.removeprefix("./") if name == "data_dir" else shown), name
    assert doc["ca"]["key_type"] == CaConfig.model_fields["key_type"].default
    for name, field in LifecycleConfig.model_fields.items():
        assert doc["lifecycle"][name] == field.get_default(), f"lifecycle.{name}"
    for name, field in DnsConfig.model_fields.items():
        default = field.get_default()
        shown = tuple(doc["dns"][name]) if isinstance(default, tuple) else doc["dns"][name]
        assert shown == default, f"dns.{name}"
    web = doc["listeners"][0]
    for name, field in ListenerConfig.model_fields.items():
        if name in ("name", "kind", "bind", "upstream", "routes", "tls"):
            continue
        # shown on the first listener of the sample whose kind it concerns
        value = next(entry[name] for entry in doc["listeners"] if name in entry)
        default = field.get_default()
        shown = tuple(value) if isinstance(default, tuple) else value
        assert shown == default, f"listeners.{name}"
    for name, field in TlsPolicy.model_fields.items():
        assert web["tls"][name] == field.get_default(), f"listeners[0].tls.{name}"
    for name, field in AdminConfig.model_fields.items():
        assert doc["admin"][name] == field.get_default(), f"admin.{name}"
