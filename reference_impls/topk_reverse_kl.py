"""Demo runner: ``python -m reference_impls.topk_reverse_kl``.

Caches the teacher's top-k log-probabilities once, trains a tiny student from the cache with
this loss and prints the loss and KL(teacher || student); see :mod:`reference_impls.demo` and
:mod:`reference_impls.topk_demo`. Importing it raises ``ImportError`` on purpose: the name
``reference_impls.topk_reverse_kl`` is the loss function.
"""

if __name__ != "__main__":
    raise ImportError(
        "reference_impls.topk_reverse_kl is a demo runner; import the loss as "
        "`from reference_impls import topk_reverse_kl`"
    )

import sys

from reference_impls.demo import main

sys.exit(main("topk_reverse_kl"))
