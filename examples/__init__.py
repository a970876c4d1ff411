"""Example chat apps for statemw: `make demo` (Starlette) and `make demo-flask` (Flask)."""
