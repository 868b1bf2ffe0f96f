"""``certgate init``: the data directory, the master key and the built-in CA."""

from __future__ import annotations

import click

from gateway.cli.common import CliState, emit, fail, json_option, pass_state, run


@click.command()
@json_option
@pass_state
def init(state: CliState, as_json: bool) -> None:
    """Create the data directory, master key (0600) and built-in CA. Safe to run twice."""
    from certstore.persistence.keyfile import create_master_key, read_master_key
    from certstore.store import CertStore
    from certstore.x509info import describe

    config = state.config()
    try:
        config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as e:
        fail(f"cannot create the data directory {config.data_dir}: {e.strerror}; set "
             "data_dir in the config to a directory you can write")

    async def go() -> tuple[bool, bool, str]:
        key_created = create_master_key(config.master_key_path)
        store, created = await CertStore.initialize(
            config.database_location, read_master_key(config.master_key_path),
            ca_key_type=config.ca.key_type, token_issuer=config.token_issuer)
        try:
            return key_created, created, describe(store.ca_root).fingerprint_sha256
        finally:
            await store.close()

    key_created, created, fingerprint = run(go)
    data = {"data_dir": str(config.data_dir), "master_key_created": key_created,
            "store_created": created, "ca_fingerprint_sha256": fingerprint}
    emit(data, as_json,
         f"{'initialised' if created else 'already initialised'}: {config.data_dir} "
         f"(CA root SHA-256 {fingerprint})")
