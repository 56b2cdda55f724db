"""Test assertions over PROTOCOL 9's agreement rule (native/agreement.py)."""

from __future__ import annotations

from native.agreement import result_mismatch


def assert_result_matches(kernel: str, got: object, want: object) -> None:
    """A kernel's result (array or map) agrees with the reference's."""
    why = result_mismatch(kernel, got, want)
    assert why is None, why
