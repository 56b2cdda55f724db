"""The wheel to install, checked before a venv is made: ours, whole, and for this machine.

wheel = AgentWheel.inspect(Path("mqtt_edge_agent-0.1.0-py3-none-manylinux_2_36_aarch64.whl"),
                           machine="aarch64")     # InputError
wheel.version, wheel.sha256
"""

from __future__ import annotations

import hashlib
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from native.loader import target_name

from .errors import InputError

DISTRIBUTION = "mqtt_edge_agent"
#: The wheel tag's architecture for each kernel library folder (native/loader.py's target_name).
WHEEL_ARCH = {"x86_64": "x86_64", "aarch64": "aarch64", "armhf": "armv7l"}


def machine_arch(machine: str | None = None, pointer_bits: int | None = None) -> str:
    """This machine's architecture as wheel tags spell it (x86_64, aarch64, armv7l)."""
    folder = target_name(machine, pointer_bits)
    return WHEEL_ARCH.get(folder, folder)


@dataclass(frozen=True)
class AgentWheel:
    path: Path
    version: str
    platform: str  # the platform tag: manylinux_2_36_aarch64, linux_x86_64, any
    sha256: str

    @classmethod
    def inspect(cls, path: Path, arch: str) -> AgentWheel:
        parts = path.name.removesuffix(".whl").split("-")
        if not path.name.endswith(".whl") or len(parts) != 5 or parts[0] != DISTRIBUTION:
            raise InputError(
                f"--wheel {path.name}: not a wheel of {DISTRIBUTION} (expected "
                f"{DISTRIBUTION}-VERSION-py3-none-manylinux_2_36_{arch}.whl from `make dist`)"
            )
        if not path.is_file():
            raise InputError(f"--wheel {path}: no such file")
        version, platform = parts[1], parts[4]
        if platform != "any" and not any(p.endswith(f"_{arch}") for p in platform.split(".")):
            raise InputError(
                f"--wheel {path.name} is built for {platform}, this machine is {arch}: copy the "
                f"{DISTRIBUTION}-{version}-py3-none-manylinux_2_36_{arch}.whl that `make dist` wrote"
            )
        data = path.read_bytes()
        _check_archive(path, version)
        return cls(path, version, platform, hashlib.sha256(data).hexdigest())


def _check_archive(path: Path, version: str) -> None:
    """Every member's CRC, and the metadata's version against the file name."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
            metadata = archive.read(f"{DISTRIBUTION}-{version}.dist-info/METADATA").decode()
    except (zipfile.BadZipFile, zlib.error, KeyError, OSError, UnicodeDecodeError) as exc:
        raise InputError(f"--wheel {path.name} is damaged or not a wheel ({exc}): copy it again") from None
    if bad is not None:
        raise InputError(f"--wheel {path.name} is damaged ({bad} fails its CRC): copy it again")
    if f"\nVersion: {version}\n" not in metadata:
        raise InputError(f"--wheel {path.name}: its metadata disagrees with its name about the version")
