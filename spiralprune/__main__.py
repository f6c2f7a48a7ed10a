"""``python -m spiralprune``: the ``spiral`` command."""

import sys

from spiralprune.pipeline.cli import main

sys.exit(main())
