"""Every error the protocol library raises, each carrying the PROTOCOL.md error code.

Two families matter to a receiver, because PROTOCOL 4/5 treat them differently:

* `AuthenticationError`: checks 1 to 3 failed (or check 4 failed with no readable `id`).
  Never answered on a results topic; reported on `{p}/rejects/{node}` instead.
* `TaskRejected`: checks 4 to 9 failed for a task whose `id` is known. Answered with a
  result of status `rejected` and `error.code` = `code`.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Base of every protocol failure; `code` is the wire error code."""

    code: str = "malformed"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


# --- codec -----------------------------------------------------------------


class CodecError(ProtocolError):
    """A payload is not the MessagePack this protocol allows (section 2)."""

    code = "malformed"


class PayloadTooLarge(CodecError):
    """The payload is over `Limits.max_payload`; refused before a byte is decoded."""

    code = "too_large"


class DepthError(CodecError):
    """Maps and lists nest deeper than `Limits.max_depth`."""


class ElementLimitError(CodecError):
    """A list, map or array holds more than `Limits.max_elements` items."""


class DtypeError(CodecError):
    """An ext array's dtype is not one of PROTOCOL 2's list."""


class ShapeError(CodecError):
    """An ext array's shape is not a list of at most `Limits.max_dims` non-negative ints."""


class ArrayDataError(CodecError):
    """An ext array's data is not a bin of exactly product(shape) x itemsize bytes."""


class ExtTypeError(CodecError):
    """An ext type other than 1 (arrays), including MessagePack timestamps (-1)."""


class EncodeError(ProtocolError):
    """A value cannot be put on the wire (unsupported type or dtype).

    Raised to the *sender*, never sent: it is a programming error on our side.
    """

    code = "malformed"


# --- authentication (checks 1-3, section 5) ---------------------------------

REJECT_CODES = frozenset(
    {"malformed", "too_large", "unknown_key", "revoked_key", "wrong_role", "bad_signature"}
)


class AuthenticationError(ProtocolError):
    """The payload cannot be authenticated; report it on the rejects topic (PROTOCOL 5)."""

    def __init__(
        self,
        message: str,
        *,
        code: str,
        kid: str | None = None,
        task_id: str | None = None,
        field: str | None = None,
    ) -> None:
        if code not in REJECT_CODES:
            raise ValueError(f"not a rejects code: {code!r}")
        super().__init__(message, code=code)
        self.kid = kid
        self.task_id = task_id
        self.field = field  # for a body without a readable id: the field check 4 refused


# --- task rejection (checks 4-9, a result with status "rejected") ----------

TASK_REJECT_CODES = frozenset(
    {
        "malformed",
        "target_mismatch",
        "not_yet_valid",
        "expired",
        "ttl_too_long",
        "replayed",
        "duplicate_id",
        "unknown_kernel",
        "invalid_params",
        "overloaded",
    }
)


class TaskRejected(ProtocolError):
    """An authenticated task with a readable `id` fails a check: answer with `rejected`."""

    def __init__(
        self, message: str, *, code: str, task_id: str, kid: str | None = None, field: str | None = None
    ) -> None:
        if code not in TASK_REJECT_CODES:
            raise ValueError(f"not a task rejection code: {code!r}")
        super().__init__(message, code=code)
        self.task_id = task_id
        self.kid = kid
        self.field = field  # for `malformed`: the field check 4 refused


class BodyError(ProtocolError):
    """A message body lacks a field or has one of the wrong type (check 4).

    `field` names the offending field, so the sender learns exactly what to fix.
    """

    code = "malformed"

    def __init__(self, message: str, *, field: str, code: str = "malformed") -> None:
        super().__init__(message, code=code)
        self.field = field


# --- trust store --------------------------------------------------------------


class TrustStoreError(Exception):
    """A trust store file cannot be loaded; the message names the entry and the field."""

    def __init__(
        self, message: str, *, path: str | None = None, entry: int | None = None, field: str | None = None
    ) -> None:
        where = []
        if path:
            where.append(path)
        if entry is not None:
            where.append(f"key #{entry}")
        if field:
            where.append(f"field '{field}'")
        super().__init__(f"{': '.join(where)}: {message}" if where else message)
        self.path = path
        self.entry = entry
        self.field = field


class TopicError(ValueError):
    """A topic or id does not fit PROTOCOL 1."""
