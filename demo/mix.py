"""The demo device's tasks: every kernel of PROTOCOL 9 on sensor-like data, and what goes wrong.

`opening(rng)` is the burst the device sends first (every kernel once at its own priority, a
recurring task, an invalid one); `trickle(rng, n)` one more task at a time, cycling through the
same kinds. The forged tasks are the device's job (`device.py`): they need keys, not parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

KERNELS = (
    "stats",
    "fft_magnitude",
    "fir_filter",
    "moving_average",
    "zscore_anomalies",
    "conv2d",
    "histogram",
    "matrix_multiply",
)
SAMPLE_RATE_HZ = 1000.0


@dataclass(frozen=True)
class Planned:
    """One task to sign and send: `label` starts its id, `options` are optional fields of PROTOCOL 4."""

    label: str
    kernel: str
    params: dict[str, Any]
    options: dict[str, Any] = field(default_factory=dict)


def temperature(rng: np.random.Generator, n: int = 256) -> np.ndarray:
    """A day of a room's temperature in degrees C: a slow swing plus sensor noise."""
    t = np.linspace(0.0, 2 * np.pi, n)
    out: np.ndarray = 21.0 + 2.5 * np.sin(t - 1.2) + rng.normal(0.0, 0.15, n)
    return out


def vibration(rng: np.random.Generator, n: int = 1024) -> np.ndarray:
    """A motor's accelerometer at 1 kHz: 50 Hz rotation, a 120 Hz bearing tone, noise."""
    t = np.arange(n) / SAMPLE_RATE_HZ
    return np.sin(2 * np.pi * 50 * t) + 0.3 * np.sin(2 * np.pi * 120 * t) + rng.normal(0.0, 0.1, n)


def with_spikes(rng: np.random.Generator, n: int = 512, spikes: int = 4) -> np.ndarray:
    """Current draw in amperes with a few surges, for the anomaly detector to find."""
    signal = 3.0 + rng.normal(0.0, 0.05, n)
    at = rng.choice(n, size=spikes, replace=False)
    signal[at] += rng.uniform(1.0, 2.0, spikes)
    return signal


def lowpass_taps(count: int = 31, cutoff: float = 0.1) -> np.ndarray:
    """A Hamming-windowed sinc low-pass filter (cutoff in cycles per sample), unit gain at DC."""
    n = np.arange(count) - (count - 1) / 2
    taps: np.ndarray = np.sinc(2 * cutoff * n) * np.hamming(count)
    return taps / float(taps.sum())


def camera_frame(rng: np.random.Generator, h: int = 48, w: int = 64) -> np.ndarray:
    """A grey-scale frame: a lit background gradient, a bright box, a little noise."""
    frame = np.tile(np.linspace(0.2, 0.6, w), (h, 1))
    frame[12:30, 20:44] = 0.9
    return frame + rng.normal(0.0, 0.02, (h, w))


SOBEL_X = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def params_for(kernel: str, rng: np.random.Generator) -> dict[str, Any]:
    """Realistic parameters for one kernel of PROTOCOL 9."""
    if kernel == "stats":
        return {"signal": temperature(rng)}
    if kernel == "fft_magnitude":
        return {"signal": vibration(rng), "sample_rate": SAMPLE_RATE_HZ}
    if kernel == "fir_filter":
        return {"signal": vibration(rng, 512), "taps": lowpass_taps()}
    if kernel == "moving_average":
        return {"signal": temperature(rng, 288), "window": 12}
    if kernel == "zscore_anomalies":
        return {"signal": with_spikes(rng), "threshold": 4.0}
    if kernel == "conv2d":
        return {"image": camera_frame(rng), "kernel": SOBEL_X}
    if kernel == "histogram":
        return {"signal": rng.normal(3.0, 0.4, 2000), "bins": 24, "range": [1.0, 5.0]}
    if kernel == "matrix_multiply":
        # A calibration matrix applied to 64 readings of 6 channels.
        return {
            "matrix_a": rng.normal(0.0, 1.0, (64, 6)),
            "matrix_b": np.eye(6) + rng.normal(0, 0.01, (6, 6)),
        }
    raise ValueError(f"no demo parameters for kernel {kernel!r}")


#: The opening burst's priorities: urgent anomaly detection first, bulk statistics last.
PRIORITIES = {
    "zscore_anomalies": 9,
    "fft_magnitude": 7,
    "conv2d": 6,
    "stats": 5,
    "matrix_multiply": 5,
    "fir_filter": 4,
    "moving_average": 3,
    "histogram": 2,
}
RECURRING_EVERY_S = 5.0
INVALID_EVERY, FORGED_EVERY = 10, 11


def opening(rng: np.random.Generator) -> list[Planned]:
    """Every kernel once, a recurring task, and one whose params fail validation."""
    tasks = [Planned(k, k, params_for(k, rng), {"priority": PRIORITIES[k]}) for k in KERNELS]
    tasks.append(
        Planned("recurring", "stats", {"signal": temperature(rng, 64)}, {"every_s": RECURRING_EVERY_S})
    )
    tasks.append(invalid(rng))
    return tasks


def invalid(rng: np.random.Generator) -> Planned:
    """Check 8 fails: a window longer than the signal -> `rejected invalid_params` naming `window`."""
    return Planned("invalid", "moving_average", {"signal": temperature(rng, 16), "window": 64})


def trickle(rng: np.random.Generator, n: int) -> Planned | None:
    """The device's n-th task after the opening (n = 0, 1, ...): the kernels in turn at random
    priorities, every INVALID_EVERY-th an invalid one; None where a forged one is due (the device's
    job). So a view that starts late still sees every kind of outcome within one cycle."""
    if n % FORGED_EVERY == FORGED_EVERY - 1:
        return None
    if n % INVALID_EVERY == INVALID_EVERY - 1:
        return invalid(rng)
    kernel = KERNELS[n % len(KERNELS)]
    return Planned(kernel, kernel, params_for(kernel, rng), {"priority": int(rng.integers(0, 10))})
