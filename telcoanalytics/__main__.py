"""``python -m telcoanalytics`` is the ``telcoanalytics`` command."""

import sys

from telcoanalytics.cli import main

sys.exit(main())
