"""The device's settings: `config.py` from `edge-provision bundle`, checked before anything runs.

A missing setting or one of the wrong type stops the program with `SettingError`, whose message
names the setting and says what it must be, so a hand-edited file fails at start and not halfway
through a connect. No state beyond the returned object.
"""

NAME_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-"
ALG = "hmac-sha256"


class SettingError(ValueError):
    """A setting of config.py is missing or wrong; the message names it."""


def _is_name(text):
    return 0 < len(text) <= 64 and all(c in NAME_CHARS for c in text)


def _port(value):
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536


# name -> (check, what it must be); `None` allowed only where the check says so
_RULES = {
    "NAME": (lambda v: isinstance(v, str) and _is_name(v), "the device's name, a str"),
    "KID": (lambda v: isinstance(v, str) and _is_name(v), "the device's key id, a str"),
    "ALG": (lambda v: v == ALG, "'hmac-sha256' (MicroPython has no Ed25519)"),
    "SECRET": (
        lambda v: isinstance(v, (bytes, bytearray)) and len(v) >= 16,
        "bytes: the device's HMAC secret, at least 16 of them",
    ),
    "PREFIX": (
        lambda v: isinstance(v, str) and v and "+" not in v and "#" not in v,
        "the topic prefix, a str",
    ),
    "TARGET": (
        lambda v: v is None or (isinstance(v, str) and (v == "all" or _is_name(v.replace("pool:", "", 1)))),
        "a node id, 'all' or 'pool:NAME' (or None and --target)",
    ),
    "HOST": (lambda v: isinstance(v, str) and v, "the broker's host name or address, a str"),
    "TLS_PORT": (_port, "the broker's TLS port, an int from 1 to 65535"),
    "TCP_PORT": (_port, "the broker's plain MQTT port, an int from 1 to 65535"),
    "USE_TLS": (
        lambda v: isinstance(v, bool),
        "True (mutual TLS on TLS_PORT) or False (plain MQTT on TCP_PORT)",
    ),
    "USERNAME": (lambda v: isinstance(v, str) and v, "the broker login, a str"),
    "PASSWORD": (lambda v: isinstance(v, str) and v, "the broker password, a str"),
    "CA_FILE": (lambda v: isinstance(v, str) and v, "a file name, a str"),
    "CERT_FILE": (lambda v: isinstance(v, str) and v, "a file name, a str"),
    "KEY_FILE": (lambda v: isinstance(v, str) and v, "a file name, a str"),
}
_DEFAULTS = {"USE_TLS": True}  # config.py from before USE_TLS existed: TLS, as it always said


class Settings:
    """The checked values of config.py, as attributes of the same names (`s.SECRET`, ...)."""

    def __init__(self, values):
        for name, value in values.items():
            setattr(self, name, value)

    @property
    def port(self):
        return self.TLS_PORT if self.USE_TLS else self.TCP_PORT


def check(module, overrides=None):
    """Settings from the attributes of `module` (config.py), `overrides` (from the command line)
    replacing some; raises `SettingError` naming the first bad one."""
    values = {}
    for name, (ok, what) in _RULES.items():
        if overrides and name in overrides:
            value = overrides[name]
        elif hasattr(module, name):
            value = getattr(module, name)
        elif name in _DEFAULTS:
            value = _DEFAULTS[name]
        else:
            raise SettingError(f"config.py: {name} is missing ({what})")
        if not ok(value):
            raise SettingError(f"config.py: {name} must be {what}, got {_shown(name, value)}")
        values[name] = bytes(value) if name == "SECRET" else value
    return Settings(values)


def _shown(name, value):
    """What an error message may show of a value: never a secret or a password."""
    if name in ("SECRET", "PASSWORD") and isinstance(value, (str, bytes, bytearray)):
        return f"a {type(value).__name__} of length {len(value)}"
    return repr(value)
