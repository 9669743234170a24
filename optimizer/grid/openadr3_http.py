"""The OpenADR 3 VEN's HTTP side: bearer tokens (a file, or OAuth2 client credentials) and a
VTN client that pages listings and refuses oversized or non-JSON answers before using them."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

log = logging.getLogger("optimizer.grid.openadr3")

MAX_BODY = 8 << 20
PAGE = 50  # the 3.0.1 schema's maximum ``limit``
MAX_PAGES = 200


class VtnError(Exception):
    """The VTN could not be used this poll (unreachable, refused, or an unusable document)."""


# --- tokens ------------------------------------------------------------------------------------


class FileToken:
    """A bearer token kept in a file; re-read after a 401/403 so an operator can rotate it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._token: str | None = None

    async def get(self, session: aiohttp.ClientSession) -> str:
        if self._token is None:
            self._token = self.path.read_text().strip()
            if not self._token:
                raise VtnError(f"token file {self.path} is empty")
        return self._token

    def invalidate(self) -> None:
        self._token = None


class ClientCredentials:
    """OAuth2 client-credentials grant (RFC 6749 4.4) against the VTN's token endpoint."""

    def __init__(self, token_url: str, client_id: str, client_secret: str,
                 scope: str | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.token_url, self.client_id, self.client_secret = token_url, client_id, client_secret
        self.scope = scope
        self.clock = clock
        self._token: str | None = None
        self._until = 0.0

    async def get(self, session: aiohttp.ClientSession) -> str:
        if self._token is not None and self.clock() < self._until:
            return self._token
        form = {"grant_type": "client_credentials", "client_id": self.client_id,
                "client_secret": self.client_secret}
        if self.scope:
            form["scope"] = self.scope
        async with session.post(self.token_url, data=form) as resp:
            body = await _read(resp)
            if resp.status != 200:
                raise VtnError(f"token endpoint answered {resp.status}")
        try:
            doc = json.loads(body)
            token = doc["access_token"]
            ttl = float(doc.get("expires_in", 3600))
        except (ValueError, KeyError, TypeError):
            raise VtnError("token endpoint sent no access_token") from None
        if not isinstance(token, str) or not token:
            raise VtnError("token endpoint sent no access_token")
        self._token, self._until = token, self.clock() + max(0.0, ttl - 30.0)
        return token

    def invalidate(self) -> None:
        self._token = None


TokenSource = FileToken | ClientCredentials


async def _read(resp: aiohttp.ClientResponse) -> bytes:
    """The body, refused unread beyond :data:`MAX_BODY` (Content-Length or streamed count)."""
    if resp.content_length is not None and resp.content_length > MAX_BODY:
        raise VtnError(f"response of {resp.content_length} bytes; at most {MAX_BODY}")
    parts: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > MAX_BODY:
            raise VtnError(f"response larger than {MAX_BODY} bytes")
        parts.append(chunk)
    return b"".join(parts)


class VtnClient:
    """The few OpenADR 3 REST calls a VEN makes, with the bearer token and size limits."""

    def __init__(self, base_url: str, tokens: TokenSource, session: aiohttp.ClientSession) -> None:
        self.base = base_url.rstrip("/")
        self.tokens = tokens
        self.session = session

    async def _call(self, method: str, path: str, params: dict[str, Any] | None = None,
                    body: object = None) -> Any:
        for attempt in (0, 1):
            headers = {"Authorization": f"Bearer {await self.tokens.get(self.session)}",
                       "Accept": "application/json"}
            async with self.session.request(method, self.base + path, params=params,
                                            json=body, headers=headers) as resp:
                data = await _read(resp)
                # 3.0.1 lists 403 for a refused token (and no 401); RFC 6750 uses 401
                if resp.status in (401, 403) and attempt == 0:
                    self.tokens.invalidate()
                    continue
                if not 200 <= resp.status < 300:
                    raise VtnError(f"{method} {path}: HTTP {resp.status} "
                                   f"{data[:200].decode(errors='replace')}")
            if not data:
                return None
            try:
                return json.loads(data)
            except ValueError:
                raise VtnError(f"{method} {path}: the answer is not JSON") from None
        raise VtnError(f"{method} {path}: token refused after renewing it")

    async def get_all(self, path: str, params: dict[str, str] | None = None) -> list[Any]:
        """Every object of a listing, following ``skip``/``limit`` pages."""
        out: list[Any] = []
        for page in range(MAX_PAGES):
            got = await self._call("GET", path, {**(params or {}), "skip": page * PAGE,
                                                 "limit": PAGE})
            if not isinstance(got, list):
                raise VtnError(f"GET {path}: expected a JSON array, got {type(got).__name__}")
            out.extend(got)
            if len(got) < PAGE:
                return out
        raise VtnError(f"GET {path}: more than {MAX_PAGES * PAGE} objects")

    async def post(self, path: str, body: object) -> Any:
        return await self._call("POST", path, body=body)
