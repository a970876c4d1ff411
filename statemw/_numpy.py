"""numpy, imported the first time semantic memory uses it: `import statemw` does not, so a web
worker that never selects by meaning pays neither its import time nor its BLAS threads.

`AVAILABLE` says whether it is installed (found, not imported), once; `load()` imports it.
"""

from __future__ import annotations

import functools
import importlib.util
from types import ModuleType

AVAILABLE: bool = importlib.util.find_spec("numpy") is not None
"""Whether numpy is installed (`pip install 'statemw[semantic]'`): the numpy paths run then."""


@functools.cache
def load() -> ModuleType:
    """The numpy module, imported on the first call (only made when AVAILABLE)."""
    import numpy

    return numpy
