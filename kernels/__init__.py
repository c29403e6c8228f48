"""Pure Numba kernels of telcoanalytics (ships with the ``telcoanalytics`` distribution).

This top-level package is *not* the unrelated PyPI project named ``kernels``. It has no
import-time side effects: importing it compiles nothing and imports no submodule. Each
submodule holds ``@kernel`` functions only: arrays and scalars in, arrays out, no Python
objects, no I/O, and no imports from ``telcoanalytics``.
"""
