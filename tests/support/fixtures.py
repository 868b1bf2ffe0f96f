"""Pytest fixtures for end-to-end tests with real IPP clients and peers.

Use them from a test package's ``conftest.py``::

    from tests.support.fixtures import ippeveprinter, ipptool, netns  # noqa: F401

(``pytest_plugins`` is only allowed in the root conftest, which other engineers own.)

Fixtures:

* ``netns`` (module): a started :class:`~tests.support.netns.NetNamespace` with
  ``acme.example``, ``print.acme.example``, ``globex.example`` -> 198.51.100.10 and
  ``printer.example`` -> 127.0.0.1.
* ``ippeveprinter`` (module): a started :class:`~tests.support.ippeveprinter.IppEvePrinter`
  inside ``netns`` (plain HTTP on 127.0.0.1/::1, port ``.port``). Its spool accumulates over
  the module: compare ``spooled_files()`` before and after an operation.
* ``ipptool`` (function): a prepared :class:`~tests.support.ipptool.IppTool` that runs in
  ``netns`` (stock .test files + a PDF in a per-test directory).
* ``tenant_cert`` (function): :class:`~tests.support.certs.CertFiles`, a self-signed ECDSA
  certificate for the tenant names and 198.51.100.10/127.0.0.1, written to a temp dir.
* ``sni_recorder`` (function): a started :class:`~tests.support.sni.SniRecorder` in ``netns``
  serving ``tenant_cert`` on 0.0.0.0 (of the namespace), port ``.port``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.certs import CertFiles, write_self_signed
from tests.support.ippeveprinter import IppEvePrinter
from tests.support.ipptool import IppTool
from tests.support.netns import DEFAULT_HOSTS, TENANT_ADDRESS, NetNamespace
from tests.support.sni import SniRecorder

TENANT_NAMES = tuple(name for name, addr in DEFAULT_HOSTS.items() if addr == TENANT_ADDRESS)


@pytest.fixture(scope="module")
def netns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetNamespace]:
    """A private network+mount namespace with tenant names in its hosts file."""
    with NetNamespace(tmp_path_factory.mktemp("netns")) as namespace:
        yield namespace


@pytest.fixture(scope="module")
def ippeveprinter(
    netns: NetNamespace, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[IppEvePrinter]:
    """ippeveprinter (with private D-Bus + avahi) running inside ``netns``."""
    with IppEvePrinter(tmp_path_factory.mktemp("ippeveprinter"), netns) as printer:
        yield printer


@pytest.fixture
def ipptool(netns: NetNamespace, tmp_path: Path) -> IppTool:
    """An ipptool work directory (stock .test files and a PDF) whose runs go into ``netns``."""
    return IppTool(tmp_path / "ipptool", netns).prepare()


@pytest.fixture
def tenant_cert(tmp_path: Path) -> CertFiles:
    """A self-signed certificate for the tenant names, generated now (never committed)."""
    return write_self_signed(
        tmp_path / "certs", TENANT_NAMES, ip_addresses=(TENANT_ADDRESS, "127.0.0.1")
    )


@pytest.fixture
def sni_recorder(
    netns: NetNamespace, tenant_cert: CertFiles, tmp_path: Path
) -> Iterator[SniRecorder]:
    """A TLS server in ``netns`` that records the SNI of each connection."""
    with SniRecorder(tmp_path / "sni", tenant_cert, netns) as recorder:
        yield recorder
