"""``certgate ca``: the built-in certificate authority."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from gateway.cli.common import CliState, emit, json_option, pass_state, with_store

if TYPE_CHECKING:
    from cryptography import x509

    from certstore.store import CertStore


@click.group()
def ca() -> None:
    """The built-in certificate authority."""


@ca.command("show")
@json_option
@pass_state
def ca_show(state: CliState, as_json: bool) -> None:
    """Print the built-in root CA certificate (PEM) that clients trust."""
    from cryptography.hazmat.primitives import serialization

    from certstore.x509info import describe

    async def op(store: CertStore) -> x509.Certificate:
        return store.ca_root

    root = with_store(state, op)
    pem = root.public_bytes(serialization.Encoding.PEM).decode()
    info = describe(root)
    emit({"pem": pem, "subject": info.subject, "fingerprint_sha256": info.fingerprint_sha256,
          "not_after": info.not_after.isoformat()}, as_json, pem)
