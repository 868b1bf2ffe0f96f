"""Reading request bodies: JSON into a model, multipart forms and raw files into bytes.

Every reader counts bytes against ``admin.max_upload_bytes`` (413 past it) and turns any
parser failure into a 4xx problem. Multipart parts are kept in memory, never spooled to a
temporary file as ``request.post()`` would: a PKCS#12 upload holds a private key, and keys
never touch the disk. Nothing read here is ever logged.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from aiohttp import BodyPartReader, web
from pydantic import BaseModel, ValidationError

from gateway.admin.problems import Problem, invalid_request

M = TypeVar("M", bound=BaseModel)
_JSON_TYPES = ("application/json",)
# RFC 7578 4.7: form-data parts carry no transfer encoding; a compressed part could be a
# decompression bomb, so only identity encodings are read.
_IDENTITY = {"", "identity", "binary", "7bit", "8bit"}


def _is_json(content_type: str) -> bool:
    return content_type in _JSON_TYPES or content_type.endswith("+json")


def _too_large(limit: int) -> web.HTTPRequestEntityTooLarge:
    return web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=limit + 1)


class _RepeatedKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise _RepeatedKey(key)
        seen.add(key)
    return dict(pairs)


def _refuse_repeated_keys(raw: bytes) -> None:
    """A member named twice in one JSON object is refused, never "the last one wins": a
    client that sent ``{"domain": "a", "domain": "b"}`` would otherwise get a chain for
    ``b`` alone without a word (RFC 8259 section 4 leaves duplicates to the receiver)."""
    try:
        json.loads(raw, object_pairs_hook=_unique_keys)
    except _RepeatedKey as e:
        raise Problem(422, "invalid-request",
                      f"the field {e.key!r} is repeated in one JSON object; give it once",
                      extra={"errors": [{"field": e.key, "message": "repeated field",
                                         "type": "repeated_field"}]}) from None
    except (ValueError, RecursionError):
        return  # not JSON: the model's parser reports it (400)


async def read_json(request: web.Request, model: type[M], limit: int) -> M:
    """The JSON body validated as ``model``: 415 for another media type, 400 when it is not
    JSON, 422 naming each invalid or unknown field."""
    if "Content-Type" in request.headers and not _is_json(request.content_type):
        raise Problem(415, "unsupported-media-type",
                      f"send the body as application/json, not {request.content_type}")
    raw = await request.read()  # aiohttp enforces client_max_size (413)
    if len(raw) > limit:
        raise _too_large(limit)
    _refuse_repeated_keys(raw)
    try:
        return model.model_validate_json(raw)
    except ValidationError as e:
        if any(item["type"] == "json_invalid" for item in e.errors()):
            raise Problem(400, "malformed-request", "the request body is not valid JSON; "
                          "send one JSON object") from None
        raise invalid_request("the request body is invalid", e) from None


async def read_form(request: web.Request, allowed: frozenset[str],
                    limit: int) -> dict[str, bytes]:
    """A ``multipart/form-data`` body as ``name -> bytes`` (each name at most once)."""
    if request.content_type != "multipart/form-data":
        raise Problem(415, "unsupported-media-type",
                      f"send a multipart/form-data body, not {request.content_type}")
    fields: dict[str, bytes] = {}
    total = 0
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise Problem(400, "malformed-request", "nested multipart bodies are not "
                              "accepted; send each field as one part")
            name = part.name
            if name is None or name not in allowed:
                raise Problem(422, "invalid-request",
                              f"unknown form field {name!r}; the fields are "
                              + ", ".join(sorted(allowed)),
                              extra={"errors": [{"field": str(name),
                                                 "message": "unknown form field",
                                                 "type": "extra_forbidden"}]})
            if name in fields:
                raise Problem(422, "invalid-request", f"the form field {name!r} is repeated")
            encoding = {part.headers.get("Content-Encoding", "").lower(),
                        part.headers.get("Content-Transfer-Encoding", "").lower()}
            if not encoding <= _IDENTITY:
                raise Problem(415, "unsupported-media-type",
                              f"form field {name!r} is encoded; send it as plain bytes")
            chunks = bytearray()
            while chunk := await part.read_chunk():
                total += len(chunk)
                if total > limit:
                    raise _too_large(limit)
                chunks += chunk
            fields[name] = bytes(chunks)
    except (Problem, web.HTTPException):
        raise
    except Exception as e:  # aiohttp raises ValueError, AssertionError... on broken bodies
        raise Problem(400, "malformed-request", "the multipart body cannot be read "
                      f"({type(e).__name__}); send a well-formed multipart/form-data body"
                      ) from None
    return fields


async def read_file(request: web.Request, limit: int) -> bytes:
    """An uploaded file: the raw body, or the ``file`` field of a multipart form."""
    if request.content_type.startswith("multipart/"):
        form = await read_form(request, frozenset({"file"}), limit)
        if "file" not in form:
            raise missing_field("file")
        return form["file"]
    raw = await request.read()
    if len(raw) > limit:
        raise _too_large(limit)
    return raw


def missing_field(name: str) -> Problem:
    """422 for a required form field that is absent."""
    return Problem(422, "invalid-request", f"the form field {name!r} is required",
                   extra={"errors": [{"field": name, "message": "Field required",
                                      "type": "missing"}]})
