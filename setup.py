from setuptools import setup

setup(cffi_modules=["native/_build_cffi.py:ffibuilder"])
