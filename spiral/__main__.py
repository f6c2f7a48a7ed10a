"""``python -m spiral``: the ``spiral`` command."""

import sys

from spiral.pipeline.cli import main

sys.exit(main())
