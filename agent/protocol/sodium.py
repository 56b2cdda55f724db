"""Ed25519 by libsodium, taken from PyNaCl's bundled copy when it is installed.

Why: verifying the signature is most of the cost of accepting a task, and libsodium's
`crypto_sign_verify_detached` is about twice as fast as `cryptography`'s OpenSSL 3 path for
bodies up to tens of kilobytes (OpenSSL hashes large bodies faster: see `MAX_BODY`).
PyNaCl's public API only offers `crypto_sign_open`, which copies the body three times, so
the library file PyNaCl ships is opened with ctypes and the detached function called
directly (ctypes releases the GIL during the call); nothing of PyNaCl is imported, and
neither is cffi's C parser, which an ABI-mode `cdef` would load into the agent for ~2 MB.
Signing (results, events) goes the same way: Ed25519 is deterministic, so the signatures
are byte for byte those of `cryptography`, only cheaper. Anything missing (no PyNaCl, as on
armhf where it has no wheel, or a build that does not export the symbols) leaves
`verify_detached` and `seed_signer` None and `keys` uses `cryptography`, with the same
results: both implement RFC 8032, and libsodium is the stricter verifier (it also refuses
small-order points).
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
from collections.abc import Callable

#: Above this body size OpenSSL's SHA-512 makes `cryptography` the faster of the two.
MAX_BODY = 64 * 1024
SIGNATURE_BYTES = 64
PUBLIC_KEY_BYTES = 32
SEED_BYTES = 32

VerifyDetached = Callable[[bytes, bytes, bytes], bool]
SignDetached = Callable[[bytes], bytes]
SeedSigner = Callable[[bytes], SignDetached]  # seed (the 32-byte private key) -> sign(data)

_BYTES = ctypes.c_char_p  # a bytes object's own buffer, passed without a copy
_OUT = ctypes.c_void_p  # a ctypes buffer libsodium writes into


def _load() -> tuple[VerifyDetached, SeedSigner] | None:
    if os.environ.get("EDGE_ED25519_BACKEND", "").lower() == "cryptography":
        return None  # the fallback on demand: tests run both paths
    try:
        spec = importlib.util.find_spec("nacl._sodium")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    try:
        lib = ctypes.CDLL(spec.origin)  # never unloaded: ctypes keeps the handle for the process
        if lib.sodium_init() < 0:
            return None
        detached = lib.crypto_sign_verify_detached
        keypair, sign_detached = lib.crypto_sign_seed_keypair, lib.crypto_sign_detached
    except (OSError, AttributeError):
        return None
    ull = ctypes.c_ulonglong
    # int crypto_sign_verify_detached(const uchar *sig, const uchar *m, ull mlen, const uchar *pk)
    detached.argtypes, detached.restype = (_BYTES, _BYTES, ull, _BYTES), ctypes.c_int
    # int crypto_sign_seed_keypair(uchar *pk, uchar *sk, const uchar *seed)
    keypair.argtypes, keypair.restype = (_OUT, _OUT, _BYTES), ctypes.c_int
    # int crypto_sign_detached(uchar *sig, ull *siglen_p, const uchar *m, ull mlen, const uchar *sk)
    sign_detached.argtypes, sign_detached.restype = (_OUT, _OUT, _BYTES, ull, _OUT), ctypes.c_int

    def verify(signature: bytes, data: bytes, public_key: bytes) -> bool:
        # libsodium reads exactly 64 and 32 bytes behind these pointers: check the lengths first.
        if len(signature) != SIGNATURE_BYTES or len(public_key) != PUBLIC_KEY_BYTES:
            return False
        return bool(detached(signature, data, len(data), public_key) == 0)

    def seed_signer(seed: bytes) -> SignDetached:
        if len(seed) != SEED_BYTES:
            raise ValueError(f"an Ed25519 seed is {SEED_BYTES} bytes, not {len(seed)}")
        public, secret = ctypes.create_string_buffer(32), ctypes.create_string_buffer(64)
        if keypair(public, secret, seed) != 0:
            raise ValueError("libsodium refused the Ed25519 seed")

        def sign(data: bytes) -> bytes:
            signature = ctypes.create_string_buffer(SIGNATURE_BYTES)  # one per call: shared by threads
            sign_detached(signature, None, data, len(data), secret)
            return signature.raw

        return sign

    return verify, seed_signer


_LOADED = _load()
verify_detached: VerifyDetached | None = None if _LOADED is None else _LOADED[0]
#: Signing by libsodium for a seed, or None (then `cryptography` signs).
seed_signer: SeedSigner | None = None if _LOADED is None else _LOADED[1]
BACKEND = "libsodium" if verify_detached is not None else "cryptography"
