"""``python -m reference_impls.zoo [options]``: run the loss zoo, write zoo.json."""

import sys

from reference_impls.zoo.cli import main

sys.exit(main())
