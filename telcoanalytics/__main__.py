"""``python -m telcoanalytics`` is the ``telcoanalytics`` command."""
import sys

from .cli import main

sys.exit(main())
