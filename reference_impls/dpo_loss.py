"""Demo runner: ``python -m reference_impls.dpo_loss``.

Trains a tiny student with this loss and prints the loss and KL(teacher || student); see
:mod:`reference_impls.demo`. Importing it raises ``ImportError`` on purpose: the name
``reference_impls.dpo_loss`` is the loss function.
"""

if __name__ != "__main__":
    raise ImportError(
        "reference_impls.dpo_loss is a demo runner; import the loss as "
        "`from reference_impls import dpo_loss`"
    )

import sys

from reference_impls.demo import main

sys.exit(main("dpo_loss"))
