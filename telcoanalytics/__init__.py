"""telcoanalytics: streaming analytics for high-volume telecom data on Numba kernels."""

__version__ = "0.1.0"
