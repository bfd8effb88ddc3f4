"""``python -m kbtool``: the same CLI as the ``kbtool`` console script."""

from kbtool.cli import main

main()
