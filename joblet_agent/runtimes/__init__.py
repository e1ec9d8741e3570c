"""Runtimes: version-specific language environments a job selects with `runtime` (docs/runtimes.md).

spec.py reads runtime.yml, reference.py parses `--runtime=` values, resolve.py picks an installed
runtime and checks a job against it; units/runtime.py turns it into unit properties and
adapters/runtime_store.py installs and removes them on disk.
"""
