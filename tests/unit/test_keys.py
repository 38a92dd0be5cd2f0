"""Keys match the real ``wg`` tool, and private keys never show in repr/str."""

from __future__ import annotations

import subprocess

import pytest

from tests.helpers import wg_pubkey
from wiremesh.errors import ValidationError
from wiremesh.model.keys import PrivateKey, PublicKey


def test_public_key_matches_wg_pubkey() -> None:
    for _ in range(20):
        key = PrivateKey.generate()
        assert key.public_key().b64 == wg_pubkey(key.reveal())


def test_wg_genkey_keys_are_accepted_and_derived_identically() -> None:
    for _ in range(5):
        text = subprocess.run(["wg", "genkey"], capture_output=True, text=True, check=True).stdout
        key = PrivateKey.parse(text.strip())
        assert key.public_key().b64 == wg_pubkey(text.strip())


def test_private_key_is_hidden_in_repr_and_str() -> None:
    key = PrivateKey.generate()
    assert key.reveal() not in repr(key)
    assert key.reveal() not in str(key)
    assert key.reveal() not in repr([key])


@pytest.mark.parametrize(
    "text",
    ["", "abc", "A" * 44, "x" * 43 + "=", PrivateKey.generate().reveal()[:-2], 42],
)
def test_bad_keys_are_rejected(text: object) -> None:
    with pytest.raises(ValidationError, match=r"not a WireGuard key|must be a string"):
        PublicKey.parse(text)
