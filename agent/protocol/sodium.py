"""Ed25519 verification by libsodium, taken from PyNaCl's bundled copy when it is installed.

Why: verifying the signature is most of the cost of accepting a task, and libsodium's
`crypto_sign_verify_detached` is about twice as fast as `cryptography`'s OpenSSL 3 path for
bodies up to tens of kilobytes (OpenSSL hashes large bodies faster: see `MAX_BODY`).
PyNaCl's public API only offers `crypto_sign_open`, which copies the body three times, so
the library file PyNaCl ships is opened with ctypes and the detached function called
directly (ctypes releases the GIL during the call); nothing of PyNaCl is imported, and
neither is cffi's C parser, which an ABI-mode `cdef` would load into the agent for ~2 MB.
Anything missing (no PyNaCl, as on armv7l where it has no wheel, or a build that does not
export the symbols) leaves `verify_detached` None and `keys.Ed25519Verifier` verifies with
`cryptography`, with the same results:
both implement RFC 8032, and libsodium is the stricter (it also refuses small-order points).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable

#: Above this body size OpenSSL's SHA-512 makes `cryptography` the faster of the two.
MAX_BODY = 64 * 1024
SIGNATURE_BYTES = 64
PUBLIC_KEY_BYTES = 32

VerifyDetached = Callable[[bytes, bytes, bytes], bool]


def _load() -> VerifyDetached | None:
    if os.environ.get("EDGE_ED25519_BACKEND", "").lower() == "cryptography":
        return None  # the fallback on demand: tests run both paths
    try:
        spec = importlib.util.find_spec("nacl._sodium")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    import ctypes

    try:
        lib = ctypes.CDLL(spec.origin)  # never unloaded: ctypes keeps the handle for the process
        if lib.sodium_init() < 0:
            return None
        detached = lib.crypto_sign_verify_detached
    except (OSError, AttributeError):
        return None
    # int crypto_sign_verify_detached(const unsigned char *sig, const unsigned char *m,
    #                                 unsigned long long mlen, const unsigned char *pk)
    detached.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulonglong, ctypes.c_char_p)
    detached.restype = ctypes.c_int

    def verify(signature: bytes, data: bytes, public_key: bytes) -> bool:
        # libsodium reads exactly 64 and 32 bytes behind these pointers: check the lengths first.
        if len(signature) != SIGNATURE_BYTES or len(public_key) != PUBLIC_KEY_BYTES:
            return False
        return bool(detached(signature, data, len(data), public_key) == 0)

    return verify


verify_detached: VerifyDetached | None = _load()
BACKEND = "libsodium" if verify_detached is not None else "cryptography"
