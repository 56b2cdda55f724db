"""Task bodies, their HMAC-SHA256 envelopes (PROTOCOL 3 and 4), and reading a reply.

The device signs with its HMAC secret; it cannot verify the agent's Ed25519 signature on a
reply (MicroPython has none), so `read_reply` only decodes and checks that the reply is the
answer to this task from the node it names: what makes it trustworthy is the broker (see
README.md, "What the device trusts"). No state: safe to call from the main loop only, like
everything in this program.
"""

import binascii
import hashlib
import hmac
import os
import time
from collections import OrderedDict

import mpack

# seconds from the port's epoch to 1970's: 0 on unix, 946684800 on ports whose epoch is 2000
EPOCH_OFFSET = 0 if time.gmtime(0)[0] == 1970 else 946684800
DOUBLE = 1.0 + 2.0**-40 != 1.0  # the port's float is 64-bit (unix; not ESP32's default build)


class ReplyError(ValueError):
    """A message on the replies topic that is not a readable answer to the task sent."""


def now():
    """Seconds since 1970 (the port's clock must be set: `ntptime.settime()` on a board). A float
    where floats are 64-bit; else whole seconds as an int, which agents accept (a 32-bit float
    of today's time is off by up to a minute)."""
    t = time.time() + EPOCH_OFFSET
    return float(t) if DOUBLE else int(t)


def topic_for(prefix, target):
    """The topic a task for `target` is published on (PROTOCOL 1)."""
    if target.startswith("pool:"):
        return f"{prefix}/tasks/pool/{target[5:]}"
    return f"{prefix}/tasks/{target}"


def body(kernel, params, target, issued_at, ttl_s, reply=True, task_id=None):
    """A task body (PROTOCOL 4) as an ordered map, with a fresh id and nonce unless given."""
    fields = OrderedDict()
    fields["id"] = task_id or "mp-" + binascii.hexlify(os.urandom(8)).decode()
    fields["kernel"] = kernel
    fields["params"] = params
    fields["target"] = target
    fields["issued_at"] = issued_at
    fields["expires_at"] = issued_at + (ttl_s if DOUBLE else int(ttl_s))  # ints stay ints (`now`)
    fields["nonce"] = os.urandom(16)
    if reply:
        fields["reply"] = True
    return fields


def signature(secret, data):
    """HMAC-SHA256 of `data` with the device's secret (PROTOCOL 3)."""
    return hmac.new(secret, data, hashlib.sha256).digest()


def envelope(kid, secret, body_bytes):
    """The signed envelope around an encoded body, fields in PROTOCOL 3's order."""
    env = OrderedDict()
    env["v"] = 1
    env["alg"] = "hmac-sha256"
    env["kid"] = kid
    env["body"] = body_bytes
    env["sig"] = signature(secret, body_bytes)
    return mpack.packb(env)


def read_reply(payload, task_id):
    """(envelope map, result map) of a reply to `task_id`; the signature is NOT checked here."""
    try:
        env = mpack.unpackb(payload)
        if not isinstance(env, dict) or env.get("v") != 1 or not isinstance(env.get("body"), bytes):
            raise ReplyError("not a signed envelope (PROTOCOL 3)")
        result = mpack.unpackb(env["body"])
    except mpack.MpackError as exc:
        raise ReplyError("not MessagePack: " + str(exc)) from None
    if not isinstance(result, dict) or result.get("id") != task_id:
        raise ReplyError("not the result of " + task_id)
    if env.get("alg") != "ed25519" or env.get("kid") != result.get("node"):
        raise ReplyError("not signed by the agent it names ({!r})".format(result.get("node")))
    return env, result
