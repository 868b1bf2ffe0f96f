"""The store commands' fast reading of the config agrees with the full model."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.config import Config, load_config
from gateway.configfile import TOP_LEVEL_KEYS, store_settings
from gateway.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_top_level_keys_are_the_models() -> None:
    assert TOP_LEVEL_KEYS == tuple(Config.model_fields)


@pytest.mark.parametrize("text", [
    "", "listeners: []\n", "data_dir: ./data\n", "data_dir: /srv/certgate\n",
    "data_dir: d\nmaster_key_file: ../keys/m.key\ndatabase: db/x.sqlite\ntoken_issuer: acme\n",
    "master_key_file: null\ndatabase: null\n",
    "lifecycle: {tls_validity: 3m, signing_validity: 12h, renew_fraction: 0.5}\n",
    "lifecycle: {expiring_within: 1d, check_interval: 10s, webhook_url: null}\n",
])
def test_store_settings_agree_with_the_full_config(tmp_path: Path, text: str) -> None:
    (tmp_path / "c.yaml").write_text(text)
    full = load_config(tmp_path / "c.yaml")
    fast = store_settings(tmp_path / "c.yaml")
    assert (fast.data_dir, fast.master_key_path, fast.database_location, fast.token_issuer) == (
        full.data_dir, full.master_key_path, full.database_location, full.token_issuer)
    assert fast.lifetimes == full.lifecycle.lifetimes()


def test_the_example_agrees() -> None:
    full = load_config(ROOT / "config.example.yaml")
    fast = store_settings(ROOT / "config.example.yaml")
    assert (fast.data_dir, fast.database_location) == (full.data_dir, full.database_location)


@pytest.mark.parametrize(("text", "key", "wanted"), [
    ("data_dri: ./v\n", "data_dri", "did you mean 'data_dir'?"),
    ("data_dir: 3\n", "data_dir", "not a valid path (got 3)"),
    ("database: [a]\n", "database", "not a valid path"),
    ("token_issuer: [1]\n", "token_issuer", "valid string"),
    ("lifecycle: {tls_validity: 90}\n", "lifecycle.tls_validity", "such as 90d"),
    ("lifecycle: {tls_valdity: 90d}\n", "lifecycle.tls_valdity", "did you mean 'tls_validity'?"),
])
def test_store_settings_refuse_what_the_full_config_refuses(tmp_path: Path, text: str,
                                                           key: str, wanted: str) -> None:
    (tmp_path / "c.yaml").write_text(text)
    for read in (store_settings, load_config):
        with pytest.raises(ConfigError) as info:
            read(tmp_path / "c.yaml")
        assert info.value.key == key and "\n" not in str(info.value)
        assert str(tmp_path / "c.yaml") in str(info.value)
    with pytest.raises(ConfigError, match=wanted.replace("?", r"\?").replace("(", r"\(")
                       .replace(")", r"\)").replace("[", r"\[")):
        store_settings(tmp_path / "c.yaml")


_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(
    max_size=20)
_DOCS = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.sampled_from([*TOP_LEVEL_KEYS, "listeners", "bind", "kind", "x", "name"]) | st.text(
        max_size=8), inner, max_size=5), max_leaves=20)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=_DOCS)
def test_fuzzed_documents_are_read_or_refused_in_one_line(tmp_path: Path, doc: object) -> None:
    """Any YAML document: both readers answer a config or one ConfigError line, nothing
    else (no traceback reaches the user)."""
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(doc))
    for read in (store_settings, load_config):
        try:
            read(tmp_path / "c.yaml")
        except ConfigError as e:
            assert "\n" not in str(e) and str(tmp_path / "c.yaml") in str(e)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200) | st.binary(max_size=200).map(
    lambda b: b.decode("latin-1")))
def test_fuzzed_text_is_read_or_refused_in_one_line(tmp_path: Path, text: str) -> None:
    (tmp_path / "c.yaml").write_text(text, encoding="utf-8")
    for read in (store_settings, load_config):
        try:
            read(tmp_path / "c.yaml")
        except ConfigError as e:
            assert "\n" not in str(e)


@pytest.mark.parametrize(("content", "wanted"), [
    (b"data_dir: \xff\xfe\n", "is not UTF-8 text (byte 10"),
    (None, "cannot read the config file"),  # a directory where the file should be
])
def test_unreadable_files_are_one_line(tmp_path: Path, content: bytes | None,
                                       wanted: str) -> None:
    path = tmp_path / "c.yaml"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    for read in (store_settings, load_config):
        with pytest.raises(ConfigError, match=re.escape(wanted)) as info:
            read(path)
        assert "\n" not in str(info.value)


def test_a_password_in_the_database_url_is_refused_and_never_echoed(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("database: postgresql://app:hunter2@db/certgate\n")
    for read in (store_settings, load_config):
        with pytest.raises(ConfigError) as info:
            read(tmp_path / "c.yaml")
        assert info.value.key == "database" and "password" in str(info.value)
        assert "hunter2" not in str(info.value)
