"""CUPS ipptool -> certgate ipps listener -> ippeveprinter, with the tenant name as SNI.

Everything runs inside a private network namespace (tests/support/netns.py): libcups only
sends a tenant name as SNI when it resolves to a non-loopback address.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.ippeveprinter import IppEvePrinter
from tests.support.ipptool import IppTool
from tests.support.netns import TENANT_ADDRESS, NetNamespace
from tests.support.process import ManagedProcess

CLI = [sys.executable, "-m", "gateway.cli"]
STOCK = ["get-printer-attributes.test", "print-job.test", "validate-job.test",
         "create-job.test", "get-jobs.test"]


class Gateway:
    """``certgate serve`` running inside the namespace."""

    def __init__(self, proc: ManagedProcess, port: int, dead_port: int, log: Path,
                 root_pem: str) -> None:
        self.proc, self.port, self.dead_port, self.log = proc, port, dead_port, log
        self.root_pem = root_pem
        self.web_port = self.admin_port = 0

    def access(self) -> list[dict[str, object]]:
        lines = self.log.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]


def _cli(config: Path, *args: str) -> str:
    out = subprocess.run([*CLI, "-c", str(config), *args], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture(scope="module")
def gateway(netns: NetNamespace, ippeveprinter: IppEvePrinter,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("gateway")
    port = netns.free_port(TENANT_ADDRESS)
    dead_port = netns.free_port(TENANT_ADDRESS)
    web_port = netns.free_port(TENANT_ADDRESS)
    admin_port = netns.free_port("127.0.0.1")
    stopped = netns.free_port("127.0.0.1")  # nothing listens there: upstream "down"
    config = tmp / "certgate.yaml"
    config.write_text(yaml.safe_dump({
        "data_dir": "./var", "ca": {"key_type": "ecdsa-p256"},
        "listeners": [
            {"name": "print", "kind": "ipps", "bind": f"0.0.0.0:{port}",
             "upstream": ippeveprinter.http_upstream},
            {"name": "print-down", "kind": "ipps", "bind": f"0.0.0.0:{dead_port}",
             "upstream": f"http://127.0.0.1:{stopped}"},
            {"name": "web", "kind": "https", "bind": f"0.0.0.0:{web_port}",
             "upstream": ippeveprinter.http_upstream},
        ],
        "admin": {"bind": f"127.0.0.1:{admin_port}"}}))
    _cli(config, "init")
    acme = json.loads(_cli(config, "account", "create", "--name", "Acme", "--kind", "customer",
                           "--domain", "acme.example", "--domain", "print.acme.example",
                           "--json"))
    _cli(config, "chain", "generate", acme["id"], "--purpose", "tls", "--domain",
         "print.acme.example")
    _cli(config, "chain", "generate", acme["id"], "--purpose", "tls", "--domain",
         "acme.example", "--key-type", "rsa-2048")
    log = tmp / "serve.log"
    proc = netns.start_process("certgate", [*CLI, "-c", str(config), "serve"], log_path=log)
    netns.wait_for_port(TENANT_ADDRESS, port, proc=proc)
    gw = Gateway(proc, port, dead_port, log, _cli(config, "ca", "show"))
    gw.web_port = web_port
    gw.admin_port = admin_port
    yield gw
    proc.stop()


@pytest.mark.parametrize("content_length", [False, True], ids=["chunked", "content-length"])
def test_ipp_operations_through_the_gateway(gateway: Gateway, ippeveprinter: IppEvePrinter,
                                            ipptool: IppTool, content_length: bool) -> None:
    before = ippeveprinter.spooled_files()
    run = ipptool.run(f"ipps://print.acme.example:{gateway.port}/ipp/print", STOCK,
                      content_length=content_length)
    run.assert_ok()
    for op in ("Get-Printer-Attributes", "Print-Job", "Validate-Job", "Create-Job",
               "Send-Document", "Get-Jobs"):
        assert op in run.operations, run.describe()
    new = [p for p in ippeveprinter.spooled_files() if p not in before]
    assert len(new) == 2  # Print-Job and Create-Job + Send-Document
    for path in new:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == ipptool.document_sha256
    lines = [a for a in gateway.access() if a.get("listener") == "print"]
    ops = {a["ipp_operation"] for a in lines}
    assert {"Print-Job", "Send-Document", "Get-Jobs"} <= ops
    assert {a["sni"] for a in lines} == {"print.acme.example"}
    assert all(a["status"] == 200 and a["account"] for a in lines)
    assert {a["ipp_status"] for a in lines if a["ipp_operation"] == "Print-Job"} == {0}


def test_ipp_operations_are_counted_in_metrics(gateway: Gateway, netns: NetNamespace,
                                               ipptool: IppTool) -> None:
    ipptool.run(f"ipps://print.acme.example:{gateway.port}/ipp/print",
                ["get-printer-attributes.test"], wait_idle=False).assert_ok()
    metrics = netns.run(["curl", "-sk", f"https://127.0.0.1:{gateway.admin_port}/metrics"],
                        timeout=20).stdout
    line = ('certgate_ipp_operations_total{listener="print",'
            'operation="Get-Printer-Attributes",status="0x0000"}')
    assert line in metrics, metrics[-2000:]
    assert float(metrics.split(line)[1].split()[0]) >= 1


def test_sni_selects_the_tenant_chain_verified_by_a_real_client(
        gateway: Gateway, netns: NetNamespace, tmp_path: Path) -> None:
    # ipptool cannot verify certificates; openssl in the same namespace does.
    (tmp_path / "root.pem").write_text(gateway.root_pem)
    for name, key in (("print.acme.example", "id-ecPublicKey"), ("acme.example", "rsaEncryption")):
        out = netns.run(["openssl", "s_client", "-connect", f"{TENANT_ADDRESS}:{gateway.port}",
                         "-servername", name, "-CAfile", str(tmp_path / "root.pem"),
                         "-verify_return_error", "-verify_hostname", name],
                        input="", timeout=20)
        assert "Verify return code: 0 (ok)" in out.stdout, out.stdout + out.stderr
        text = netns.run(["openssl", "x509", "-noout", "-text"], input=out.stdout,
                         timeout=20).stdout
        assert key in text


def test_upstream_down_gives_ipp_error_not_a_broken_connection(
        gateway: Gateway, ipptool: IppTool) -> None:
    run = ipptool.run(f"ipps://acme.example:{gateway.dead_port}/ipp/print",
                      ["get-printer-attributes.test"], wait_idle=False)
    result = run.test("Get-Printer-Attributes")
    assert result.status == "server-error-service-unavailable", run.describe()
    assert run.error_message is None or "connect" not in run.error_message.lower()
    lines = [a for a in gateway.access() if a.get("listener") == "print-down"]
    assert lines and lines[-1]["ipp_operation"] == "Get-Printer-Attributes"
    assert lines[-1]["ipp_status"] == 0x0502  # server-error-service-unavailable


def _tickets(netns: NetNamespace, port: int) -> int:
    # A TLS 1.3 server sends its tickets right after the handshake, so they reach the client
    # before any response: s_client sends one request and (-ign_eof) reads until the
    # gateway closes after answering it. No guessed delay that a loaded machine outlasts.
    request = "GET / HTTP/1.1\\r\\nHost: acme.example\\r\\nConnection: close\\r\\n\\r\\n"
    out = netns.run(["sh", "-c", f"printf '{request}' | openssl s_client -ign_eof -connect "
                     f"{TENANT_ADDRESS}:{port} -servername acme.example -tls1_3 -msg"],
                    timeout=120)
    assert "TLSv1.3" in out.stdout, out.stdout + out.stderr
    assert "HTTP/1.1 " in out.stdout, out.stdout  # the answer came, after any ticket
    return out.stdout.count("NewSessionTicket")


def test_gateway_sends_no_tls13_session_tickets_on_ipps(gateway: Gateway,
                                                         netns: NetNamespace) -> None:
    # libcups redials forever when it gets tickets (finding in tests/support_tests);
    # https listeners keep them (browsers resume sessions with them).
    assert _tickets(netns, gateway.port) == 0
    assert _tickets(netns, gateway.web_port) > 0
