"""The work a PKCS#12 file asks for, counted from its structure before any of it is done.

Every key derivation of a PKCS#12 file runs as many hash iterations as the file says: the
MAC, each encrypted safe and each shrouded key bag name their own count. A cap per item is
not enough: a few KB can hold dozens of safes at the cap (issue 10: 0.28 s of CPU each).
So the whole file gets one budget, :data:`MAX_WORK_ITERATIONS`, checked by a walk of the
visible structure (no derivation, no decryption) before anything is derived:

* opening it: the MAC, every encrypted safe (twice for the PKCS#12 PBE of RFC 7292
  appendix B, which derives a key and an IV), every shrouded key bag of the plain safes;
* plus what a refusal's diagnosis may add (``certstore.pkcs12``): the pure-Python MAC
  check under the password and under the empty password (three MAC derivations), or the
  MAC and the key bags again.

Counts and nesting are bounded too (safes, bags, nested safe contents), so the walk itself
is cheap.

What the walk cannot count: bags inside *encrypted* safes are only visible once the safe is
decrypted, and ``cryptography``'s ``load_pkcs12`` decrypts the safes and derives their key
bags' keys in one native call. A crafted file can hide a key bag asking for billions of
PBKDF2 iterations there (the walk sees only the safe's own, cheap derivation). Walking them
would mean decrypting them here first, i.e. doing the work twice; instead, that work is
bounded where it runs: every job of the gateway's crypto workers has a CPU limit
(``admin.crypto_job_timeout_s``, :mod:`gateway.admin.workers`), and an import cut by it is
refused with this module's rule (:data:`RULE`). The count of certificates is bounded after
opening (:data:`MAX_CERTIFICATES`). The CLI, which serves nothing, opens files in a thread
without that limit.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from asn1crypto import pkcs12

from certstore.errors import InvalidCertificate

MAX_ITERATIONS = 1_000_000
"""Iterations one derivation (the MAC, a safe, a key bag) may ask for."""
MAX_WORK_ITERATIONS = 5_000_000
"""Iterations of every derivation opening (and diagnosing) one file may need together:
enough for a MAC at :data:`MAX_ITERATIONS` with its diagnosis, or four safes at it."""
MAX_SAFES = 16
MAX_BAGS = 64
MAX_NESTING = 2
MAX_CERTIFICATES = 32
RULE = "pkcs12-work-budget"
# PKCS#12 PBE (RFC 7292 appendix C) derives a key and an IV, each with the full count.
_PKCS12_PBE = frozenset({"pkcs12_sha1_rc4_128", "pkcs12_sha1_rc4_40", "pkcs12_sha1_tripledes_3key",
                         "pkcs12_sha1_tripledes_2key", "pkcs12_sha1_rc2_128",
                         "pkcs12_sha1_rc2_40"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Pkcs12Work:
    """What a file asks for: its MAC iterations and every other derivation's count."""

    mac_iterations: int
    derivations: tuple[int, ...]
    key_bag_iterations: int
    safes: int
    bags: int

    @property
    def opening(self) -> int:
        """Iterations of opening the file (MAC, safes, key bags)."""
        return self.mac_iterations + sum(self.derivations)

    @property
    def diagnosis(self) -> int:
        """Iterations a refusal's diagnosis may add (see module doc)."""
        return self.mac_iterations + max(2 * self.mac_iterations, self.key_bag_iterations)

    @property
    def total(self) -> int:
        """The most this file can cost, which the budget bounds."""
        return self.opening + self.diagnosis


def _refuse(message: str, rule: str = RULE) -> InvalidCertificate:
    return InvalidCertificate(message, rule=rule)


def _iterations(algorithm: object) -> int:
    """Iterations of one derivation of a PBES2 (PBKDF2) or PKCS#12 PBE identifier."""
    params = algorithm.get("parameters") if isinstance(algorithm, dict) else None
    if not isinstance(params, dict):
        return 0
    kdf = params.get("key_derivation_func")
    if isinstance(kdf, dict):
        kdf_params = kdf.get("parameters")
        count = kdf_params.get("iteration_count") if isinstance(kdf_params, dict) else 0
    else:
        count = params.get("iterations")
    return count if isinstance(count, int) and count > 0 else 0


def _derivations(algorithm: object) -> list[int]:
    """The derivations one encrypted item runs, each as its iteration count (capped)."""
    count = _iterations(algorithm)
    if count > MAX_ITERATIONS:
        raise _refuse(f"the file asks for {count} key-derivation iterations for one item "
                      f"(more than {MAX_ITERATIONS}); export it again with default settings",
                      "unreadable")
    name = algorithm.get("algorithm") if isinstance(algorithm, dict) else None
    return [count, count] if name in _PKCS12_PBE else [count]


def _bags(contents: bytes, depth: int) -> Iterator[pkcs12.SafeBag]:
    """Every bag of a plain safe, nested safe contents included (depth-bounded)."""
    if depth > MAX_NESTING:
        raise _refuse(f"the file nests safe contents more than {MAX_NESTING} levels deep; "
                      "export it again from its source", "not-pkcs12")
    for bag in pkcs12.SafeContents.load(contents):
        if bag["bag_id"].native == "safe_contents":
            yield from _bags(bag["bag_value"].untag().dump(), depth + 1)
        else:
            yield bag


def walk(pfx: pkcs12.Pfx) -> Pkcs12Work:
    """Count the file's work and refuse it when over the budget or the bounds.

    Any structural error escapes as a foreign exception: the caller translates it.
    """
    mac = pfx["mac_data"]["iterations"].native
    if not isinstance(mac, int) or mac < 1 or mac > MAX_ITERATIONS:
        raise _refuse(f"the file asks for {mac} key-derivation iterations for its integrity "
                      f"check (more than {MAX_ITERATIONS}); export it again with default "
                      "settings", "unreadable")
    derivations: list[int] = []
    key_bags: list[int] = []
    safes = bags = 0
    for info in pfx.authenticated_safe:
        safes += 1
        if safes > MAX_SAFES:
            raise _refuse(f"the file has more than {MAX_SAFES} safes; a certificate chain "
                          "needs two or three: export it again from its source")
        kind = info["content_type"].native
        if kind == "encrypted_data":
            derivations += _derivations(info["content"]["encrypted_content_info"][
                "content_encryption_algorithm"].native)
        elif kind == "data":
            for bag in _bags(info["content"].native, 1):
                bags += 1
                if bags > MAX_BAGS:
                    raise _refuse(f"the file has more than {MAX_BAGS} bags; export it again "
                                  "with the chain and its key only")
                if bag["bag_id"].native == "pkcs8_shrouded_key_bag":
                    key_bags += _derivations(bag["bag_value"]["encryption_algorithm"].native)
    work = Pkcs12Work(mac_iterations=mac, derivations=(*derivations, *key_bags),
                      key_bag_iterations=sum(key_bags), safes=safes, bags=bags)
    if work.total > MAX_WORK_ITERATIONS:
        raise _refuse(
            f"opening this file would take {work.total:,} key-derivation iterations in total "
            f"(its integrity check: {mac:,}; {len(work.derivations)} encrypted safes and key "
            f"bags: {sum(work.derivations):,}; checks of a wrong password: "
            f"{work.diagnosis:,}); the limit is {MAX_WORK_ITERATIONS:,}: export it again with "
            "default settings (about 2,048 iterations per item)")
    return work
