"""Ed25519 verification (and signing) by libsodium, taken from PyNaCl's bundled copy when installed.

Why: verifying the signature is most of the cost of accepting a task, and libsodium's
`crypto_sign_verify_detached` is about twice as fast as `cryptography`'s OpenSSL 3 path for
bodies up to tens of kilobytes (OpenSSL hashes large bodies faster: see `MAX_BODY`).
PyNaCl's public API only offers `crypto_sign_open`, which copies the body three times, so
the library file PyNaCl ships is opened with cffi (ABI mode) and the detached function
called directly; nothing of PyNaCl is imported. Anything missing (no PyNaCl, as on armv7l
where it has no wheel, or a build that does not export the symbols) leaves `verify_detached`
None and `keys.Ed25519Verifier` verifies with `cryptography`, with the same results:
both implement RFC 8032, and libsodium is the stricter (it also refuses small-order points).

Signing takes the same path (`seed_signer`): the agent signs every result, and libsodium's
`crypto_sign_detached` costs about two thirds of OpenSSL's (38 vs 59 us for a result-sized body).
Ed25519 signatures are deterministic (RFC 8032), so both give the same bytes for the same key
and body; tests compare them.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable

#: Above this body size OpenSSL's SHA-512 makes `cryptography` the faster of the two.
MAX_BODY = 64 * 1024
SIGNATURE_BYTES = 64
PUBLIC_KEY_BYTES = 32

_CDEF = """
int sodium_init(void);
int crypto_sign_verify_detached(const unsigned char *sig, const unsigned char *m,
                                unsigned long long mlen, const unsigned char *pk);
int crypto_sign_seed_keypair(unsigned char *pk, unsigned char *sk, const unsigned char *seed);
int crypto_sign_detached(unsigned char *sig, unsigned long long *siglen_p, const unsigned char *m,
                         unsigned long long mlen, const unsigned char *sk);
"""
SEED_BYTES = 32

VerifyDetached = Callable[[bytes, bytes, bytes], bool]
SignDetached = Callable[[bytes], bytes]
SeedSigner = Callable[[bytes], SignDetached]  # seed (the 32-byte private key) -> sign(data)
_keep_alive: list[object] = []  # the FFI and the library: freeing them would dlclose libsodium


def _load() -> tuple[VerifyDetached, SeedSigner] | None:
    if os.environ.get("EDGE_ED25519_BACKEND", "").lower() == "cryptography":
        return None  # the fallback on demand: tests run both paths
    try:
        spec = importlib.util.find_spec("nacl._sodium")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    import cffi

    ffi = cffi.FFI()
    ffi.cdef(_CDEF)
    try:
        lib = ffi.dlopen(spec.origin)
        if lib.sodium_init() < 0:
            return None
        detached = lib.crypto_sign_verify_detached
        keypair, sign_detached = lib.crypto_sign_seed_keypair, lib.crypto_sign_detached
    except (OSError, AttributeError):
        return None
    _keep_alive.extend((ffi, lib))

    def verify(signature: bytes, data: bytes, public_key: bytes) -> bool:
        # libsodium reads exactly 64 and 32 bytes behind these pointers: check the lengths first.
        if len(signature) != SIGNATURE_BYTES or len(public_key) != PUBLIC_KEY_BYTES:
            return False
        return detached(signature, data, len(data), public_key) == 0  # type: ignore[no-any-return]

    def seed_signer(seed: bytes) -> SignDetached:
        if len(seed) != SEED_BYTES:
            raise ValueError(f"an Ed25519 seed is {SEED_BYTES} bytes, not {len(seed)}")
        public, secret = ffi.new("unsigned char[32]"), ffi.new("unsigned char[64]")
        if keypair(public, secret, seed) != 0:
            raise ValueError("libsodium refused the Ed25519 seed")

        def sign(data: bytes) -> bytes:
            signature = ffi.new("unsigned char[64]")  # one per call: signers are shared by threads
            sign_detached(signature, ffi.NULL, data, len(data), secret)
            return bytes(ffi.buffer(signature))

        return sign

    return verify, seed_signer


_LOADED = _load()
verify_detached: VerifyDetached | None = None if _LOADED is None else _LOADED[0]
#: Signing by libsodium for a seed, or None (then `cryptography` signs).
seed_signer: SeedSigner | None = None if _LOADED is None else _LOADED[1]
BACKEND = "libsodium" if verify_detached is not None else "cryptography"
