"""Opaque page tokens: where the next page of a listing starts, sealed for one subject.

A token is AES-256-GCM over the listing's position and its snapshot bound (two 8-byte
integers), with the subject it was issued for as
associated data, under a key the gateway derives from a secret it already keeps (the audit
pepper). The caller learns nothing from it (not even the log index where the next page
starts), cannot forge or alter one, and a token issued for one citizen's listing is refused
on another's. Replicas that share the pepper accept each other's tokens.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_NONCE = 12
_LABEL = b"proofless page token v1"
#: 12-byte nonce + two 8-byte integers + 16-byte tag, base64url without padding
TOKEN_LENGTH = 59


class BadPageToken(ValueError):
    """Not a token this gateway issued for this listing."""


class PageTokens:
    def __init__(self, secret: bytes, purpose: str) -> None:
        key = hmac.new(secret, _LABEL + b"\0" + purpose.encode(), hashlib.sha256).digest()
        self._aead = AESGCM(key)

    def seal(self, position: int, bound: int, subject: str) -> str:
        nonce = os.urandom(_NONCE)
        sealed = self._aead.encrypt(nonce, struct.pack(">QQ", position, bound), subject.encode())
        return base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode("ascii")

    def open(self, token: str, subject: str) -> tuple[int, int]:
        if len(token) != TOKEN_LENGTH or not token.isascii():
            raise BadPageToken("not a page token")
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            plain = self._aead.decrypt(raw[:_NONCE], raw[_NONCE:], subject.encode())
        except (binascii.Error, ValueError, InvalidTag):
            raise BadPageToken("not a page token") from None
        position, bound = struct.unpack(">QQ", plain)
        return int(position), int(bound)
