"""``python -m benchmarks.e2e``: see :mod:`benchmarks.e2e`."""

import sys

from .suite import main

sys.exit(main())
