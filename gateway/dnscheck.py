"""DNS TXT look-ups for domain challenges, through the configured resolvers.

A pending domain is verified when ``_certgate-challenge.<name>`` holds its token in a TXT
record (see :mod:`certstore.domains`). The look-up is the gateway's I/O: the store gets it
as a function. ``dns.resolvers`` in the config names the resolvers (``host:port``);
without it the system's resolvers (``/etc/resolv.conf``) are used.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.rdatatype
import dns.resolver

from certstore.audit import SYSTEM_ACTOR, acting_as
from certstore.domains import TxtLookup
from certstore.errors import CertStoreError, ChallengeLookupFailed
from gateway.config import parse_resolver

if TYPE_CHECKING:
    from certstore.store import CertStore

log = logging.getLogger("certgate.dns")

# A TXT value longer than this is no token of ours; bounded so a hostile zone cannot make
# the check build huge strings.
_MAX_VALUE = 1024
_MAX_RECORDS = 64


def txt_lookup(resolvers: tuple[str, ...], timeout_s: float) -> TxtLookup:
    """A look-up of a name's TXT strings (each record's strings joined) through
    ``resolvers``, or the system's when empty. No such name or no TXT record is an empty
    list; no answer from the resolvers is :class:`ChallengeLookupFailed`."""

    def resolver() -> dns.asyncresolver.Resolver:
        if not resolvers:
            r = dns.asyncresolver.Resolver()
        else:
            r = dns.asyncresolver.Resolver(configure=False)
            r.nameservers = [dns.nameserver.Do53Nameserver(*parse_resolver(v))
                             for v in resolvers]
        r.lifetime = timeout_s
        r.cache = None  # a check must see what DNS serves now
        return r

    async def lookup(name: str) -> list[str]:
        try:
            answer = await resolver().resolve(name, dns.rdatatype.TXT, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except (dns.exception.Timeout, dns.resolver.NoNameservers) as e:
            where = ", ".join(resolvers) or "the system's resolvers"
            raise ChallengeLookupFailed(
                f"the DNS look-up of {name} through {where} got no answer "
                f"({e.__class__.__name__}); the domain stays pending: try again, or check "
                "dns.resolvers in the config"
            ) from e
        values: list[str] = []
        for rdata in list(answer)[:_MAX_RECORDS]:
            joined = b"".join(rdata.strings)
            if len(joined) <= _MAX_VALUE:
                values.append(joined.decode("ascii", "replace"))
        return values

    return lookup


async def check_pending(store: CertStore, lookup: TxtLookup, *, limit: int = 1000) -> int:
    """Look up the DNS challenge of every pending domain (up to ``limit``) once; returns
    how many were verified. Audited as the gateway itself (role ``system``)."""
    verified = 0
    with acting_as(SYSTEM_ACTOR):
        for account_id, name in await store.pending_domains(limit):
            try:
                await store.verify_domain_dns(account_id, name, lookup)
            except CertStoreError as e:  # not published yet, or DNS down: stays pending
                log.debug("domain %s stays pending: %s", name, e.message)
                continue
            verified += 1
            log.info("domain %s of account %s verified through DNS", name, account_id)
    return verified


async def check_pending_forever(store: CertStore, lookup: TxtLookup,
                                interval_s: float) -> None:
    """Run :func:`check_pending` every ``interval_s`` seconds until cancelled."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await check_pending(store, lookup)
        except Exception:  # a failed sweep must not end the loop (the next one retries)
            log.exception("the DNS check of pending domains failed")
