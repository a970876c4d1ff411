"""The version, written once: the package's `__version__`, the build's (pyproject.toml) and the
OpenTelemetry instrumentation scope's (telemetry.py) all read it here, a module that imports
nothing, so telemetry can use it without an import circle through `statemw/__init__.py`."""

__version__ = "0.1.0"
