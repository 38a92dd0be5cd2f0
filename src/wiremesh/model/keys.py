"""WireGuard keys: Curve25519 (X25519) key pairs, base64-encoded as ``wg genkey``/``wg pubkey`` do.

A private key never appears in a ``repr`` or a log line (innernet's rule); only :meth:`PrivateKey.reveal`
gives its text, and only the offline ``render``/``show --reveal`` paths call it.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from cryptography.hazmat.primitives.serialization import PublicFormat as _PublicFormat

from wiremesh.errors import ValidationError, quote, wrong_type

KEY_LEN = 32


def _decode(text: object, what: str, secret: bool = False) -> bytes:
    if not isinstance(text, str):
        if secret:
            raise ValidationError(f"{what} must be a string", "a key is 44 characters of base64")
        raise wrong_type(what, text, "a string", '"<44 characters of base64>"')
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    # Canonical form only (re-encoding gives the same text), like wg(8)'s key_from_base64.
    if len(raw) != KEY_LEN or base64.b64encode(raw).decode() != text.strip():
        # A malformed private key may still be most of a real one: never quote it.
        shown = "" if secret else f" {quote(text)}"
        raise ValidationError(
            f"{what}{shown} is not a WireGuard key",
            "a key is 32 bytes in base64 (44 characters ending in '='), as printed by 'wg pubkey'",
        )
    return raw


@dataclass(frozen=True, order=True)
class PublicKey:
    """A WireGuard public key (base64 text)."""

    b64: str

    @staticmethod
    def parse(text: object, what: str = "public key") -> PublicKey:
        """Validate base64 text into a key."""
        raw = _decode(text, what)
        return PublicKey(base64.b64encode(raw).decode())

    @property
    def raw(self) -> bytes:
        """The 32 key bytes."""
        return base64.b64decode(self.b64)

    def hex(self) -> str:
        """Hex form, as wireguard's UAPI uses."""
        return self.raw.hex()

    def __str__(self) -> str:
        return self.b64


@dataclass(frozen=True)
class PrivateKey:
    """A WireGuard private key. Its text is hidden from ``repr`` and ``str``."""

    _b64: str = field(repr=False)

    @staticmethod
    def generate() -> PrivateKey:
        """A new random key, like ``wg genkey`` (X25519 clamping happens in the primitive)."""
        raw = X25519PrivateKey.generate().private_bytes(
            Encoding.Raw, PrivateFormat.Raw, NoEncryption()
        )
        return PrivateKey(base64.b64encode(raw).decode())

    @staticmethod
    def parse(text: object, what: str = "private key") -> PrivateKey:
        """Validate base64 text into a private key (an error never shows the text)."""
        raw = _decode(text, what, secret=True)
        return PrivateKey(base64.b64encode(raw).decode())

    def public_key(self) -> PublicKey:
        """The matching public key, exactly as ``wg pubkey`` computes it."""
        priv = X25519PrivateKey.from_private_bytes(base64.b64decode(self._b64))
        raw = priv.public_key().public_bytes(Encoding.Raw, _PublicFormat.Raw)
        return PublicKey(base64.b64encode(raw).decode())

    def reveal(self) -> str:
        """The base64 text of the key. Only for writing it where it belongs."""
        return self._b64

    def __str__(self) -> str:
        return "<private key>"
