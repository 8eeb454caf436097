"""Basic authentication against the bcrypt hashes of ``basic_auth_users`` (owns ``bcrypt``).

As the exporter-toolkit does: the ``Authorization: Basic`` credentials are checked with
bcrypt once, and the verdict is cached under a digest of (user, hash, password), so a scraper
sending a known password costs a dictionary lookup, not a bcrypt run. An unknown user is
checked against a fixed dummy hash so that timing does not reveal which users exist. The
cache holds digests only (never a password) and is bounded; bcrypt runs one at a time (it
is CPU-bound) in one worker thread of its own, never on the event loop, and at most
:data:`MAX_PENDING` wait. Credentials are never logged.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import os
from concurrent.futures import ThreadPoolExecutor

import bcrypt

CACHE_SIZE = 100
"""Verdicts kept; when full, the oldest tenth is dropped."""

MAX_PENDING = 16
"""bcrypt runs queued at most; beyond that a new password is refused without one (a flood
of wrong passwords cannot delay anything else; known passwords are answered from the cache)."""

# A fixed bcrypt hash (cost 10) checked for unknown users, so that they cost the same time.
_DUMMY_HASH = b"$2b$10$EOCjcT4tVtVWZWRHozwZjuNUrSL.2vx52LK7llv6p.6cG1sNz5HuW"


def parse_basic(header: str) -> tuple[str, str] | None:
    """User and password of an ``Authorization: Basic`` header, ``None`` if malformed (pure)."""
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic" or not token:
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    if not sep:
        return None
    return user, password


class BasicAuth:
    """The users of one web config and a bounded cache of verified credentials."""

    def __init__(self, users: tuple[tuple[str, str], ...]) -> None:
        """Users as ``(name, bcrypt hash)`` pairs, already validated by the web config."""
        self.users = users
        self._users = {name.encode(): hashed.encode() for name, hashed in users}
        self._key = os.urandom(32)  # cache digests are useless outside this process
        self._cache: dict[bytes, bool] = {}
        self._pending = 0
        self._executor: ThreadPoolExecutor | None = None  # one bcrypt run at a time

    @property
    def enabled(self) -> bool:
        """True when the web config lists users (every request then needs credentials)."""
        return bool(self._users)

    def cached(self, header: str) -> bool | None:
        """The cached verdict for this ``Authorization`` value, ``None`` when not cached.

        A malformed or missing header is ``False`` at once.
        """
        parsed = parse_basic(header)
        if parsed is None:
            return False
        return self._cache.get(self._digest(*parsed))

    async def check(self, header: str) -> bool:
        """True when the header names a user and that user's password."""
        verdict = self.cached(header)
        if verdict is not None:
            return verdict
        parsed = parse_basic(header)
        if parsed is None or self._pending >= MAX_PENDING:
            return False
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="bcrypt")
        self._pending += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, self._verify, *parsed)
        finally:
            self._pending -= 1

    def close(self) -> None:
        """Stop the bcrypt worker (a run in progress finishes on its own)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def _digest(self, user: str, password: str) -> bytes:
        name = user.encode()
        hashed = self._users.get(name, _DUMMY_HASH)
        material = b"\0".join((name, hashed, password.encode("utf-8", "surrogatepass")))
        return hmac.new(self._key, material, hashlib.sha256).digest()

    def _verify(self, user: str, password: str) -> bool:
        name = user.encode()
        known = name in self._users
        hashed = self._users.get(name, _DUMMY_HASH)
        ok = bcrypt.checkpw(password.encode("utf-8", "surrogatepass"), hashed)
        verdict = ok and known
        cache = self._cache
        if len(cache) >= CACHE_SIZE:
            for stale in list(cache)[: CACHE_SIZE // 10]:
                cache.pop(stale, None)
        cache[self._digest(user, password)] = verdict
        return verdict
