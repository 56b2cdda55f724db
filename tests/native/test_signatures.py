"""native/signatures.py against the validators of specs.py: every declared claim (names, which are
required, kinds, dimensions, bounds, defaults, examples) is checked against what the validator of
that kernel accepts and refuses, so the kernel picker of edge-gateway cannot offer a form the fleet
would refuse, or miss a param it needs."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from native.errors import InvalidParams
from native.registry import SPECS, KernelSpec
from native.signatures import SIGNATURES, Param
from native.validation import Limits

LIMITS = Limits()


def _example(spec: KernelSpec[Any]) -> dict[str, Any]:
    return {p.name: p.example for p in spec.signature.params}


def _refused(spec: KernelSpec[Any], params: dict[str, Any]) -> str:
    with pytest.raises(InvalidParams) as refused:
        spec.validate(params, LIMITS)
    return str(refused.value.field)


def _same(a: object, b: object) -> bool:
    """Two validated argument objects hold the same values (arrays compared by value)."""
    return all(
        np.array_equal(getattr(a, f.name), getattr(b, f.name), equal_nan=True)
        if isinstance(getattr(a, f.name), np.ndarray)
        else getattr(a, f.name) == getattr(b, f.name)
        for f in dataclasses.fields(a)  # type: ignore[arg-type]
    )


def _wrong_kind(param: Param) -> list[object]:
    """Values of the right general shape but the wrong kind, dimension or range for `param`."""
    if param.kind == "ndarray":
        assert param.ndim is not None
        return ["abc", np.zeros((2,) * (param.ndim + 1)), [[1.0], [2.0, 3.0]] if param.ndim == 2 else [["x"]]]
    if param.kind == "int":
        return [2.5, "3", True]
    if param.kind == "float":
        return ["fast", [1.0]]
    return [[1.0], [2.0, 1.0], ["a", "b"], [0.0, float("inf")]]


def _out_of_bounds(param: Param) -> list[object]:
    values: list[object] = []
    if param.minimum is not None:
        values.append(param.minimum - 1)
    if param.maximum is not None:
        values.append(param.maximum + 1)
    if param.exclusive_minimum is not None:
        values += [param.exclusive_minimum, param.exclusive_minimum - 1]
    return values


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_the_declared_params_are_the_ones_the_validator_accepts(spec: KernelSpec[Any]) -> None:
    assert spec.signature is SIGNATURES[spec.name] and spec.signature.doc
    example = _example(spec)
    spec.validate(example, LIMITS)  # every param at its example: accepted
    assert _refused(spec, {**example, "unexpected": 1}) == "unexpected"  # and nothing more
    for param in spec.signature.params:
        assert param.example is not None, f"{spec.name}.{param.name} has no example"
        without = {k: v for k, v in example.items() if k != param.name}
        if param.required:
            assert _refused(spec, without) == param.name, f"{spec.name}.{param.name} is required"
        else:
            accepted = spec.validate(without, LIMITS)
            if param.default is not None:
                with_default = spec.validate({**without, param.name: param.default}, LIMITS)
                assert _same(accepted, with_default), f"{spec.name}.{param.name}'s default"
        for value in _wrong_kind(param) + _out_of_bounds(param):
            refused = _refused(spec, {**example, param.name: value})
            assert refused == param.name, (spec.name, param.name, value)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_declared_bounds_are_inclusive_where_they_say_so(spec: KernelSpec[Any]) -> None:
    example = _example(spec)
    for param in spec.signature.params:
        for bound in (param.minimum, param.maximum):
            if bound is not None and not (param.name == "window" and bound > len(example["signal"])):
                spec.validate({**example, param.name: bound}, LIMITS)
        if param.exclusive_minimum is not None:
            spec.validate({**example, param.name: param.exclusive_minimum + 1e-9}, LIMITS)


def test_every_kernel_of_the_registry_is_declared() -> None:
    assert {s.name for s in SPECS} == set(SIGNATURES)
    for signature in SIGNATURES.values():
        assert [p.view()["name"] for p in signature.params] == [p.name for p in signature.params]
        assert all(set(p.view()) >= {"name", "kind", "required", "doc"} for p in signature.params)
