import os

from setuptools import setup

# pip install compiles the native kernels (cffi, API mode). EDGE_KERNELS_NO_EXTENSION=1 builds a
# wheel that loads a cross-built library instead (deploy/arm/README.md); EDGE_WHEEL_PLATFORM (set by
# `make dist`, deploy/dist.py) tags that wheel for one platform, `py3-none-<platform>`: any CPython 3
# (ABI mode needs no Python headers), the library of native/lib/<target>/ inside, not "pure".
PLATFORM = os.environ.get("EDGE_WHEEL_PLATFORM")
NO_EXTENSION = PLATFORM or os.environ.get("EDGE_KERNELS_NO_EXTENSION")
options = {}
if PLATFORM:
    from setuptools import Distribution
    from setuptools.command.bdist_wheel import bdist_wheel

    class BinaryDistribution(Distribution):
        def has_ext_modules(self) -> bool:
            return True  # a binary inside: installed as platlib, not "pure"

    class PlatformWheel(bdist_wheel):
        def get_tag(self) -> tuple[str, str, str]:
            return "py3", "none", PLATFORM

    options = {"distclass": BinaryDistribution, "cmdclass": {"bdist_wheel": PlatformWheel}}

extension = [] if NO_EXTENSION else ["native/_build_cffi.py:ffibuilder"]
setup(cffi_modules=extension, **options)
