"""Imported by the workers' forkserver only: loads numpy and the native kernels once, before any
worker is forked from it (see worker_main.py)."""

from .child import preload

preload()
