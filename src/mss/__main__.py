"""``python -m mss``: the same as the ``mss`` command."""

import sys

from .cli import main

sys.exit(main())
