"""telcoanalytics: streaming analytics for high-volume telecom data on Numba kernels."""

from telcoanalytics._malloc import tune_malloc  # standard library only: call it before importing the pipeline

__version__ = "0.1.0"
__all__ = ["tune_malloc"]
