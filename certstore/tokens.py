"""JWTs signed with an account's signing chain, and the account's JWKS (PyJWT)."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from certstore.errors import InvalidInput
from certstore.keys import SigningKey

MAX_TTL_S = 24 * 3600
DEFAULT_TTL_S = 3600


def algorithm_for(public_key: object) -> str:
    """The JWS algorithm for a key (RFC 7518 section 3.1)."""
    if isinstance(public_key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        return "RS256"
    if isinstance(public_key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        return {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}[
            public_key.curve.name
        ]
    raise InvalidInput(f"{type(public_key).__name__} keys cannot sign tokens")


def key_id(leaf: x509.Certificate) -> str:
    """``kid``: the leaf's SHA-256 thumbprint, base64url (as ``x5t#S256``, RFC 7515 4.1.8)."""
    return base64.urlsafe_b64encode(leaf.fingerprint(hashes.SHA256())).rstrip(b"=").decode()


def _x5c(chain: Sequence[x509.Certificate]) -> list[str]:
    return [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode()
            for c in chain]


def issue(*, key: SigningKey, chain: Sequence[x509.Certificate], issuer: str, account_id: str,
          subject: str, audience: str | None, ttl_s: int,
          now: dt.datetime) -> tuple[str, dt.datetime]:
    """Sign a JWT; returns the token and its expiry."""
    if not subject or not isinstance(subject, str):
        raise InvalidInput("a token needs a non-empty subject")
    if not 1 <= ttl_s <= MAX_TTL_S:
        raise InvalidInput(f"ttl_s must be between 1 and {MAX_TTL_S} seconds, got {ttl_s}")
    expires = now + dt.timedelta(seconds=ttl_s)
    claims: dict[str, Any] = {"iss": issuer, "sub": subject, "iat": int(now.timestamp()),
                              "exp": int(expires.timestamp()), "account_id": account_id}
    if audience:
        claims["aud"] = audience
    headers = {"kid": key_id(chain[0]), "x5c": _x5c(chain)}
    import jwt  # here, not at the top: most CLI commands never sign (start-up time)

    token = jwt.encode(claims, key, algorithm=algorithm_for(key), headers=headers)
    return token, expires


def jwk(chain: Sequence[x509.Certificate]) -> dict[str, Any]:
    """The public JWK (with ``kid``, ``alg``, ``use``, ``x5c``) for a chain's leaf key."""
    public = chain[0].public_key()
    alg = algorithm_for(public)
    from jwt.algorithms import ECAlgorithm, RSAAlgorithm

    raw = (RSAAlgorithm.to_jwk(public) if alg == "RS256"  # type: ignore[arg-type]
           else ECAlgorithm.to_jwk(public))  # type: ignore[arg-type]
    out: dict[str, Any] = json.loads(raw)
    out.update({"kid": key_id(chain[0]), "alg": alg, "use": "sig", "x5c": _x5c(chain)})
    return out
