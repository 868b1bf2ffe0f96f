"""An atheris target for ``read_pkcs12`` (run by ``tests/certstore/test_fuzz.py``).

``python -m tests.certstore.fuzz.pkcs12_target [libFuzzer options] CORPUS_DIR``: the first
input byte picks the password given (the right one, a wrong one, none); the rest is the
file. Any exception other than ``InvalidCertificate`` is a crash: libFuzzer writes the
input as ``crash-*`` and exits non-zero.
"""

from __future__ import annotations

import sys
import warnings

import atheris

with atheris.instrument_imports(include=["certstore", "asn1crypto"]):
    from certstore.errors import InvalidCertificate
    from certstore.pkcs12 import read_pkcs12

PASSWORDS = (b"fuzz-pw", b"wrong", None)


def one_input(data: bytes) -> None:
    """Read ``data[1:]`` with the password ``data[0]`` picks."""
    if not data:
        return
    try:
        read_pkcs12(data[1:], PASSWORDS[data[0] % len(PASSWORDS)])
    except InvalidCertificate:
        pass


def main() -> None:
    """Run the fuzzer with the command line's libFuzzer options."""
    warnings.simplefilter("error")  # as the test suite runs: a warning is a crash too
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
