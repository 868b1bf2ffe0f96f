"""A real DNS server on loopback for tests: UDP on 127.0.0.1, answering TXT records that a
test publishes (and NXDOMAIN for any other name), in its own thread so both async tests and
CLI subprocesses can query it. Wire format by dnspython's message codec."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from dns.rdtypes.ANY.TXT import TXT


class TxtServer:
    """Serves ``publish``-ed TXT records; counts the queries it answered."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.2)  # how often the loop notices close(); not an ordering wait
        self._records: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.queries: list[str] = []
        self._thread = threading.Thread(target=self._serve, name="test-dns", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``, as ``dns.resolvers`` takes it."""
        return f"127.0.0.1:{self._sock.getsockname()[1]}"

    def publish(self, name: str, *values: str) -> None:
        """Serve TXT ``values`` (one record each) at ``name``."""
        with self._lock:
            self._records[name.lower().rstrip(".")] = list(values)

    def _answer(self, data: bytes) -> bytes | None:
        try:
            query = dns.message.from_wire(data)
        except dns.exception.DNSException:
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        self.queries.append(name)
        with self._lock:
            values = self._records.get(name)
        if values is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif question.rdtype == dns.rdatatype.TXT:
            rrset = dns.rrset.RRset(question.name, dns.rdataclass.IN, dns.rdatatype.TXT)
            for value in values:
                raw = value.encode()
                # A TXT string holds 255 bytes at most; longer values span several strings
                # of one record (RFC 7208 3.3 does the same for SPF).
                chunks = [raw[i:i + 255] for i in range(0, len(raw), 255)] or [b""]
                rrset.add(TXT(dns.rdataclass.IN, dns.rdatatype.TXT, chunks), 60)
            response.answer.append(rrset)
        return response.to_wire()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self._sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            reply = self._answer(data)
            if reply is not None:
                self._sock.sendto(reply, peer)

    def close(self) -> None:
        """Stop serving and free the port."""
        self._stop.set()
        self._thread.join(timeout=10)
        self._sock.close()


@contextmanager
def txt_server() -> Iterator[TxtServer]:
    """A running :class:`TxtServer`."""
    server = TxtServer()
    try:
        yield server
    finally:
        server.close()


@contextmanager
def silent_resolver() -> Iterator[str]:
    """A UDP port on loopback that receives queries and never answers (a dead resolver)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield f"127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()
