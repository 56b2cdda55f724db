"""The libsodium fast path of Ed25519 verification agrees with `cryptography` on every input,
and its signing gives `cryptography`'s bytes (Ed25519 is deterministic)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.protocol import Ed25519Signer, sodium
from agent.protocol.keys import Ed25519Verifier

pytestmark = pytest.mark.skipif(
    sodium.verify_detached is None, reason="PyNaCl is not installed here (armv7l has no wheel)"
)

SIGNER = Ed25519Signer.generate("k")
OTHER = Ed25519Signer.generate("other")


def by_cryptography(signature: bytes, data: bytes, raw: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(raw).verify(signature, data)
    except InvalidSignature:
        return False
    return True


def both(signature: bytes, data: bytes, raw: bytes) -> bool:
    assert sodium.verify_detached is not None
    fast, slow = sodium.verify_detached(signature, data, raw), by_cryptography(signature, data, raw)
    assert fast == slow, f"libsodium says {fast}, cryptography says {slow}"
    return fast


def test_the_agent_uses_libsodium_when_pynacl_is_installed() -> None:
    assert sodium.BACKEND == "libsodium"


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=2048), flip=st.integers(min_value=0, max_value=64 * 8 - 1))
def test_valid_and_single_bit_flipped_signatures(data: bytes, flip: int) -> None:
    signature = SIGNER.sign(data)
    assert both(signature, data, SIGNER.public_raw())
    flipped = bytearray(signature)
    flipped[flip // 8] ^= 1 << (flip % 8)
    assert not both(bytes(flipped), data, SIGNER.public_raw())


@settings(max_examples=100, deadline=None)
@given(data=st.binary(min_size=1, max_size=512), index=st.integers(min_value=0))
def test_a_changed_body_or_another_key_does_not_verify(data: bytes, index: int) -> None:
    signature = SIGNER.sign(data)
    changed = bytearray(data)
    changed[index % len(data)] ^= 0x01
    assert not both(signature, bytes(changed), SIGNER.public_raw())
    assert not both(signature, data, OTHER.public_raw())


@pytest.mark.parametrize("length", [0, 1, 63, 65, 128])
def test_a_signature_of_the_wrong_length_is_refused_before_libsodium_reads_it(length: int) -> None:
    assert sodium.verify_detached is not None
    assert not sodium.verify_detached(b"\x00" * length, b"body", SIGNER.public_raw())
    assert not sodium.verify_detached(SIGNER.sign(b"body"), b"body", SIGNER.public_raw()[:31])


def test_a_non_canonical_s_is_refused_by_both() -> None:
    # S + L (the group order) is the classic malleated signature; RFC 8032 requires S < L.
    order = 2**252 + 27742317777372353535851937790883648493
    signature = SIGNER.sign(b"body")
    s = int.from_bytes(signature[32:], "little") + order
    malleated = signature[:32] + s.to_bytes(32, "little")
    assert not both(malleated, b"body", SIGNER.public_raw())


def test_large_bodies_go_to_cryptography_and_still_verify() -> None:
    data = os.urandom(sodium.MAX_BODY + 1)
    verifier = Ed25519Verifier.from_raw(SIGNER.public_raw())
    assert verifier.verify(SIGNER.sign(data), data)
    assert not verifier.verify(SIGNER.sign(data), data[:-1] + b"\x00")


def test_the_fallback_can_be_forced_and_verifies_the_same() -> None:
    code = (
        "from agent.protocol import sodium, Ed25519Signer\n"
        "s = Ed25519Signer.generate('k'); v = s.verifier()\n"
        "assert sodium.BACKEND == 'cryptography' and sodium.verify_detached is None\n"
        "assert sodium.seed_signer is None and s._fast_sign is None\n"
        "assert v.verify(s.sign(b'x'), b'x') and not v.verify(s.sign(b'x'), b'y')\n"
        "print('ok')\n"
    )
    env = {**os.environ, "EDGE_ED25519_BACKEND": "cryptography"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=4096))
def test_libsodium_signs_the_bytes_cryptography_signs(data: bytes) -> None:
    assert SIGNER._fast_sign is not None  # the agent's signer takes the libsodium path
    assert SIGNER.sign(data) == SIGNER.private_key.sign(data)
    assert OTHER.sign(data) == OTHER.private_key.sign(data) != SIGNER.sign(data)
    assert both(SIGNER.sign(data), data, SIGNER.public_raw())


def test_large_bodies_are_signed_by_cryptography_with_the_same_bytes() -> None:
    data = os.urandom(sodium.MAX_BODY + 1)
    assert SIGNER._fast_sign is not None
    assert SIGNER.sign(data) == SIGNER._fast_sign(data) == SIGNER.private_key.sign(data)


def test_a_seed_of_the_wrong_length_is_refused() -> None:
    assert sodium.seed_signer is not None
    with pytest.raises(ValueError, match="32 bytes"):
        sodium.seed_signer(b"\x00" * 31)
