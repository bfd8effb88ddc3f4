"""``python -m reference_impls.demos <loss> [options]``: train a tiny student with one loss."""

import sys

from reference_impls.demos.cli import main

sys.exit(main())
