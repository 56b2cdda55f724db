"""Golden vectors: kernel cases with the numpy references' answers, for the C++ self-test.

    python -m native.golden [PATH]     # rewrite native/selftest/golden.txt

The file is line based so that the self-test (native/selftest/selftest.cpp) reads it with the C
library alone, on any target under qemu-user. Numbers are C99 hex floats (exact), nan, inf:
    case KERNEL LABEL
    in NAME ROWS COLS V...         an array param (ROWS 0: one-dimensional)
    scalar NAME V                  window, bins, threshold, spacing, lo, hi, has_range
    expect NAME ROWS COLS V...     an output (an int output as exact floats)
    status CODE                    the ek_status the kernel must return (no expect lines)
    end
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from native.errors import InvalidParams, KernelError, KernelOutOfMemory
from native.registry import Registry
from native.validation import Params

GOLDEN = Path(__file__).resolve().parent / "selftest" / "golden.txt"
STATUS = {InvalidParams: 1, KernelOutOfMemory: 3}  # any other KernelError: EK_DOMAIN_ERROR (2)


PARAM_NAMES = {"a": "matrix_a", "b": "matrix_b"}  # validated argument -> param, where they differ
SCALAR_OUTPUTS = frozenset({"count", "mean", "std", "min", "max", "rms"})
INT_OUTPUTS = frozenset({"indices", "counts"})


@dataclass
class Case:
    kernel: str
    label: str
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    scalars: dict[str, float] = field(default_factory=dict)
    expect: dict[str, np.ndarray] = field(default_factory=dict)
    status: int = 0

    def params(self) -> dict[str, object]:
        """The kernel params this case was made from."""
        params: dict[str, object] = {PARAM_NAMES.get(k, k): v for k, v in self.arrays.items()}
        s = self.scalars
        for name in ("window", "bins"):
            if name in s:
                params[name] = int(s[name])
        if "threshold" in s:
            params["threshold"] = s["threshold"]
        if "spacing" in s:
            params["sample_rate"] = 1.0 / s["spacing"]
        if s.get("has_range"):
            params["range"] = [s["lo"], s["hi"]]
        return params

    def result(self) -> object:
        """The expected result, shaped as the kernel returns it."""
        if list(self.expect) == ["out"]:
            return self.expect["out"]
        out: dict[str, object] = {}
        for name, value in self.expect.items():
            if name == "count":
                out[name] = int(value[0])
            elif name in SCALAR_OUTPUTS:
                out[name] = float(value[0])
            else:
                out[name] = value.astype(np.int64) if name in INT_OUTPUTS else value
        return out


def _special(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal(n)
    x[rng.integers(0, n)] = rng.choice([np.nan, np.inf, -np.inf])
    return x


def _params() -> Iterator[tuple[str, str, Params]]:
    rng = np.random.default_rng(20240229)
    for m, k, n in [(1, 1, 1), (2, 3, 4), (8, 8, 8), (17, 33, 9), (40, 20, 36)]:
        yield (
            "matrix_multiply",
            f"{m}x{k}x{n}",
            {"matrix_a": rng.standard_normal((m, k)), "matrix_b": rng.standard_normal((k, n))},
        )
    yield (
        "matrix_multiply",
        "inf",
        {"matrix_a": [[np.inf, 1.0], [0.0, 2.0]], "matrix_b": [[0.0, 1.0], [3.0, np.nan]]},
    )
    for n, t in [(1, 1), (2, 5), (50, 7), (200, 31), (9, 9)]:
        yield "fir_filter", f"n{n}t{t}", {"signal": rng.standard_normal(n), "taps": rng.standard_normal(t)}
    yield "fir_filter", "special", {"signal": _special(rng, 40), "taps": [1.0, np.inf, 0.5]}
    for n, w in [(1, 1), (10, 10), (100, 7), (300, 16), (300, 100)]:  # 100: the running-sum path
        yield "moving_average", f"n{n}w{w}", {"signal": rng.standard_normal(n), "window": w}
    yield (
        "moving_average",
        "special",
        {"signal": [1.0, np.inf, 2.0, -np.inf, 3.0, np.nan, 4.0, 5.0, 6.0], "window": 2},
    )
    for n in [1, 2, 7, 8, 9, 129, 300]:
        yield "stats", f"n{n}", {"signal": rng.standard_normal(n) * 10 + 3}
        yield (
            "zscore_anomalies",
            f"n{max(n, 2)}",
            {"signal": rng.standard_normal(max(n, 2)), "threshold": 1.5},
        )
    yield "stats", "nan", {"signal": [1.0, np.nan, 2.0]}
    yield "stats", "inf", {"signal": [1.0, np.inf, 2.0]}
    yield "zscore_anomalies", "constant", {"signal": [0.1] * 9}
    yield "zscore_anomalies", "spike", {"signal": [0.0] * 30 + [50.0] + [0.0] * 9}
    for n in [2, 3, 4, 5, 6, 7, 12, 15, 16, 17, 30, 67, 97, 128, 134, 210, 1000, 1024]:
        yield "fft_magnitude", f"n{n}", {"signal": rng.standard_normal(n), "sample_rate": 250.0}
    yield "fft_magnitude", "nan", {"signal": [np.nan] + [1.0] * 8}
    yield "fft_magnitude", "inf", {"signal": [1.0, np.inf, 2.0, 0.0]}
    for h, w, kh, kw in [(1, 1, 1, 1), (1, 1, 3, 3), (4, 6, 3, 5), (16, 16, 3, 3), (20, 9, 5, 5)]:
        yield (
            "conv2d",
            f"{h}x{w}k{kh}x{kw}",
            {"image": rng.standard_normal((h, w)), "kernel": rng.standard_normal((kh, kw))},
        )
    yield (
        "conv2d",
        "inf",
        {"image": rng.standard_normal((5, 5)), "kernel": [[np.inf, 0, 0], [0, 1, 0], [0, 0, 0]]},
    )
    for n, bins, rng_ in [(1, 10, None), (100, 7, None), (500, 64, [-1.0, 1.0]), (5, 3, [2.0, 2.0])]:
        yield "histogram", f"n{n}b{bins}", {"signal": rng.standard_normal(n), "bins": bins, "range": rng_}
    yield (
        "histogram",
        "edges",
        {"signal": [0.0, 0.1, 0.2, 0.3, 0.7, 1.0, np.nan, np.inf], "bins": 10, "range": [0, 1]},
    )
    yield "histogram", "autodetect-nan", {"signal": [1.0, np.nan], "bins": 4}
    yield "histogram", "too-many-bins", {"signal": [1e17, 1e17 + 16], "bins": 4}


def _scalars(args: object) -> dict[str, float]:
    out: dict[str, float] = {}
    for name in ("window", "bins", "threshold", "spacing"):
        if hasattr(args, name):
            out[name] = float(getattr(args, name))
    if hasattr(args, "range"):
        lo, hi = args.range or (0.0, 0.0)
        out.update(has_range=float(args.range is not None), lo=lo, hi=hi)
    return out


def cases(registry: Registry) -> Iterator[Case]:
    """Every golden case with the numpy references' answers."""
    for kernel_name, label, params in _params():
        kernel = registry.get(kernel_name)
        args = kernel.validate(params)
        fields = {f.name: getattr(args, f.name) for f in dataclasses.fields(args)}
        case = Case(kernel_name, label, scalars=_scalars(args))
        case.arrays = {k: v for k, v in fields.items() if isinstance(v, np.ndarray)}
        try:
            result = kernel.reference(args)
        except KernelError as exc:
            case.status = STATUS.get(type(exc), 2)
            yield case
            continue
        items = result.items() if isinstance(result, dict) else [("out", result)]
        case.expect = {k: np.asarray(v, dtype=np.float64) for k, v in items}
        yield case


def _line(tag: str, name: str, value: np.ndarray) -> str:
    rows, cols = (value.shape[0], value.shape[1]) if value.ndim == 2 else (0, value.size)
    return " ".join([tag, name, str(rows), str(cols), *(float(v).hex() for v in value.ravel())])


def render(registry: Registry) -> str:
    lines = ["# generated by python -m native.golden from native/references.py: do not edit"]
    for case in cases(registry):
        lines.append(f"case {case.kernel} {case.label}")
        lines += [_line("in", k, v) for k, v in case.arrays.items()]
        lines += [f"scalar {k} {float(v).hex()}" for k, v in case.scalars.items()]
        lines += [_line("expect", k, v) for k, v in case.expect.items()]
        lines.append(f"status {case.status}")
        lines.append("end")
    return "\n".join(lines) + "\n"


def parse(text: str) -> list[Case]:
    """The cases of a golden file (for the tests)."""
    out: list[Case] = []
    for line in text.splitlines():
        tag, *rest = line.split(" ")
        if tag == "case":
            out.append(Case(rest[0], rest[1]))
        elif tag in ("in", "expect"):
            rows, cols = int(rest[1]), int(rest[2])
            values = np.array([float.fromhex(v) for v in rest[3:]])
            target = out[-1].arrays if tag == "in" else out[-1].expect
            target[rest[0]] = values.reshape(rows, cols) if rows else values
        elif tag == "scalar":
            out[-1].scalars[rest[0]] = float.fromhex(rest[1])
        elif tag == "status":
            out[-1].status = int(rest[0])
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    path = Path(argv[0]) if argv else GOLDEN
    path.write_text(render(Registry(None)))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
