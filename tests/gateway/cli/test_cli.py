"""The certgate CLI, run as a real subprocess the way an admin runs it."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import jwt
import pytest
from cryptography import x509

from tests.certfactory import Issued, make_leaf, openssl_pkcs12

CERTGATE = [sys.executable, "-c", "from gateway.cli import main; main()"]
Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def certgate(tmp_path: Path) -> Run:
    """Run certgate with ./certgate.yaml in a fresh directory (the documented default)."""
    (tmp_path / "certgate.yaml").write_text("data_dir: ./var\nca:\n  key_type: ecdsa-p256\n")

    def run(*args: str, ok: bool = True, env: dict[str, str] | None = None,
            stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        full_env = {k: v for k, v in os.environ.items() if k != "CERTGATE_CONFIG"}
        full_env.update(env or {})
        proc = subprocess.run([*CERTGATE, *args], cwd=tmp_path, capture_output=True, text=True,
                              env=full_env, input=stdin, timeout=60)
        if ok:
            assert proc.returncode == 0, proc.stderr
        else:
            assert proc.returncode != 0, proc.stdout
        return proc

    run("init")
    return run


def _json(proc: subprocess.CompletedProcess[str]) -> object:
    return json.loads(proc.stdout)


def test_init_creates_private_key_file_and_is_idempotent(certgate: Run, tmp_path: Path) -> None:
    key = tmp_path / "var" / "master.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "var").stat().st_mode) == 0o700
    content = key.read_bytes()
    again = _json(certgate("init", "--json"))
    assert again["store_created"] is False and again["master_key_created"] is False  # type: ignore[index]
    assert key.read_bytes() == content
    pem = certgate("ca", "show").stdout
    root = x509.load_pem_x509_certificate(pem.encode())
    assert root.subject.rfc4514_string() == "CN=certgate Root CA,O=certgate"
    assert again["ca_fingerprint_sha256"] == _json(certgate("ca", "show", "--json"))[  # type: ignore[index]
        "fingerprint_sha256"]


def test_issue_examples_work(certgate: Run, tmp_path: Path, intermediate_ca: Issued) -> None:
    acc = _json(certgate("account", "create", "--name", "Acme", "--kind", "customer",
                         "--domain", "acme.com", "--domain", "print.acme.com", "--json"))
    assert isinstance(acc, dict) and acc["id"].startswith("acc_")
    assert acc["domains"] == ["acme.com", "print.acme.com"]
    leaf = make_leaf(intermediate_ca, dns=["acme.com", "*.acme.com"])
    (tmp_path / "acme.pfx").write_bytes(openssl_pkcs12(leaf, "s3cret", tmp_path))
    (tmp_path / "pw.txt").write_text("s3cret\n")
    chain = _json(certgate("chain", "import", acc["id"], "acme.pfx", "--password-file",
                           "pw.txt", "--json"))
    assert isinstance(chain, dict)
    assert chain["dns_names"] == ["acme.com", "*.acme.com"] and chain["origin"] == "imported"
    assert "chain_pem" not in chain and "key" not in json.dumps(chain).lower().replace(
        "key_type", "")
    listed = certgate("chain", "list", acc["id"], "--json").stdout
    shown = certgate("chain", "show", chain["id"]).stdout
    for text in (listed, shown, certgate("account", "show", acc["id"]).stdout):
        assert "PRIVATE KEY" not in text
    assert "BEGIN CERTIFICATE" in shown


def test_refusals_exit_non_zero_with_reason_on_stderr(certgate: Run, tmp_path: Path,
                                                      intermediate_ca: Issued) -> None:
    acc = _json(certgate("account", "create", "--name", "A", "--kind", "customer",
                         "--domain", "a.com", "--json"))
    assert isinstance(acc, dict)
    leaf = make_leaf(intermediate_ca, dns=["a.com", "x.a.com", "b.org"])
    (tmp_path / "a.pfx").write_bytes(openssl_pkcs12(leaf, "pw", tmp_path, legacy=True))
    (tmp_path / "pw.txt").write_text("pw")
    refused = certgate("chain", "import", acc["id"], "a.pfx", "--password-file", "pw.txt",
                       ok=False)
    assert "x.a.com" in refused.stderr and "b.org" in refused.stderr
    assert "names-not-owned" in refused.stderr and refused.stdout == ""
    wrong = certgate("chain", "import", acc["id"], "a.pfx", "--password-env", "PW", ok=False,
                     env={"PW": "nope"})
    assert "wrong password" in wrong.stderr
    taken = certgate("account", "create", "--name", "B", "--kind", "vendor", "--domain",
                     "A.COM", ok=False)
    assert "already belongs" in taken.stderr
    bad = certgate("account", "create", "--name", "B", "--kind", "vendor", "--domain",
                   "*.b.com", ok=False)
    assert "*.b.com" in bad.stderr
    assert "no account" in certgate("account", "show", "acc_missing", ok=False).stderr
    # nothing was stored by the refusals
    listed = _json(certgate("chain", "list", acc["id"], "--json"))
    assert isinstance(listed, list) and [c["purpose"] for c in listed] == ["signing"]


def test_password_is_never_taken_from_argv(certgate: Run, tmp_path: Path) -> None:
    acc = _json(certgate("account", "create", "--name", "A", "--kind", "customer", "--json"))
    assert isinstance(acc, dict)
    (tmp_path / "x.pfx").write_bytes(b"x")
    proc = certgate("chain", "import", acc["id"], "x.pfx", "--password", "pw", ok=False)
    assert "No such option" in proc.stderr
    no_tty = certgate("chain", "import", acc["id"], "x.pfx", ok=False, stdin="")
    assert "--password-file" in no_tty.stderr


def test_config_lookup_order(certgate: Run, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "c.yaml").write_text("data_dir: ./data\nca: {key_type: ecdsa-p256}\n")
    certgate("init", env={"CERTGATE_CONFIG": str(other / "c.yaml")})
    assert (other / "data" / "master.key").exists()  # relative to the config file
    certgate("-c", str(other / "c.yaml"), "account", "create", "--name", "X", "--kind",
             "vendor")
    names = [a["name"] for a in _json(certgate("--config", str(other / "c.yaml"), "account",  # type: ignore[index, union-attr]
                                                "list", "--json"))]  # type: ignore[union-attr]
    assert names == ["X"]
    assert _json(certgate("account", "list", "--json")) == []  # ./certgate.yaml's own store
    (tmp_path / "bad.yaml").write_text("data_dir: ./v\nlisteners: [{name: a, kind: ftp}]\n")
    bad = certgate("-c", "bad.yaml", "account", "list", ok=False)
    assert "listeners.0.kind" in bad.stderr
    missing = certgate("-c", "nope.yaml", "init", ok=False)
    assert "no config file" in missing.stderr


def test_trusted_ca_pki_and_token_commands(certgate: Run, tmp_path: Path,
                                           root_ca: Issued) -> None:
    acc = _json(certgate("account", "create", "--name", "A", "--kind", "customer",
                         "--domain", "a.com", "--json"))
    assert isinstance(acc, dict)
    (tmp_path / "ca.pem").write_bytes(root_ca.pem())
    imported = _json(certgate("trusted-ca", "import", acc["id"], "ca.pem", "--json"))
    assert isinstance(imported, list) and imported[0]["is_ca"] is True
    assert certgate("trusted-ca", "bundle", acc["id"]).stdout == root_ca.pem().decode()
    (tmp_path / "k.pem").write_bytes(root_ca.key_pem())
    assert "private key" in certgate("trusted-ca", "import", acc["id"], "k.pem",
                                     ok=False).stderr
    tls = _json(certgate("chain", "generate", acc["id"], "--purpose", "tls", "--domain",
                         "a.com", "--key-type", "rsa-2048", "--json"))
    assert isinstance(tls, dict) and tls["key_type"] == "rsa-2048"
    certgate("pki", "bind", acc["id"], "a.com", tls["id"])
    pki = _json(certgate("pki", "show", acc["id"], "--json"))
    assert isinstance(pki, dict) and pki["tls_bindings"] == {"a.com": tls["id"]}
    token = _json(certgate("token", "issue", acc["id"], "--subject", "t1", "--audience", "api",
                           "--json"))
    assert isinstance(token, dict)
    jwks = jwt.PyJWKSet.from_dict(json.loads(certgate("token", "jwks", acc["id"]).stdout))
    claims = jwt.decode(token["token"], jwks[token["kid"]].key, algorithms=["ES256"],
                        audience="api")
    assert claims["sub"] == "t1"
    certgate("pki", "set-signing", acc["id"], "--clear")
    refused = certgate("token", "issue", acc["id"], "--subject", "t1", ok=False)
    assert "no signing chain" in refused.stderr


def _type_at_prompt(args: list[str], cwd: Path, prompt: bytes, answer: bytes) -> str:
    """Run ``args`` on a real pseudo-terminal, type ``answer`` when ``prompt`` appears;
    return everything the terminal showed."""
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child becomes the CLI
        os.chdir(cwd)
        os.execv(args[0], args)
    seen = b""
    typed = False
    deadline = time.monotonic() + 60
    try:
        while True:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                os.kill(pid, signal.SIGKILL)
                raise AssertionError(f"the CLI hangs; it printed {seen!r}")
            try:
                chunk = os.read(fd, 1024)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
            if not typed and prompt in seen:
                os.write(fd, answer)
                typed = True
    finally:
        os.close(fd)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, seen
    return seen.decode(errors="replace")


def test_password_prompt_on_a_terminal(certgate: Run, tmp_path: Path,
                                       intermediate_ca: Issued) -> None:
    """The prompt path: a real pseudo-terminal, password typed at the prompt."""
    acc = _json(certgate("account", "create", "--name", "A", "--kind", "customer",
                         "--domain", "a.com", "--json"))
    assert isinstance(acc, dict)
    (tmp_path / "a.pfx").write_bytes(openssl_pkcs12(make_leaf(intermediate_ca, dns=["a.com"]),
                                                    "typed-secret", tmp_path))
    # The password is typed once the prompt is seen (not after a fixed delay: a slow start
    # would let it arrive before echo is switched off).
    shown = _type_at_prompt([*CERTGATE, "chain", "import", acc["id"], "a.pfx", "--json"],
                            tmp_path, b"PKCS#12 password:", b"typed-secret\n")
    assert "PKCS#12 password" in shown
    assert "typed-secret" not in shown  # hidden input, never echoed
    listed = _json(certgate("chain", "list", acc["id"], "--json"))
    assert isinstance(listed, list) and [c["origin"] for c in listed] == ["generated", "imported"]


def test_malformed_files_never_print_a_traceback(certgate: Run, tmp_path: Path) -> None:
    """The fuzz corpus (issue 10: the previous code raised ValueError/AttributeError on
    these) through ``chain import`` and ``trusted-ca import``: a reason, never a traceback."""
    from tests.certstore.test_fuzz import CORPUS, PASSWORD, apply, corpus_file

    acc = _json(certgate("account", "create", "--name", "F", "--kind", "customer",
                         "--domain", "fuzz.example", "--json"))
    assert isinstance(acc, dict)
    (tmp_path / "pw.txt").write_bytes(PASSWORD)
    base = corpus_file()
    for i, case in enumerate(json.loads(CORPUS.read_text())[:4]):
        path = tmp_path / f"case{i}.p12"
        path.write_bytes(apply(base, case["ops"]))
        for args in (["chain", "import", acc["id"], str(path), "--password-file", "pw.txt"],
                     ["trusted-ca", "import", acc["id"], str(path)]):
            refused = certgate(*args, ok=False)
            assert "Traceback" not in refused.stderr and refused.stderr.strip(), refused.stderr
            assert refused.returncode in (1, 2), refused.stderr
