"""Thin shim so Dataflow's --setup_file can build the package; metadata lives in pyproject.toml."""

from setuptools import setup

setup()
