import os

from setuptools import setup

# pip install compiles the native kernels (cffi, API mode). EDGE_KERNELS_NO_EXTENSION=1 builds a
# pure-Python wheel that loads a cross-built library instead (see deploy/arm/README.md).
extension = [] if os.environ.get("EDGE_KERNELS_NO_EXTENSION") else ["native/_build_cffi.py:ffibuilder"]
setup(cffi_modules=extension)
