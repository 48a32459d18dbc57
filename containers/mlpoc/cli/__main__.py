"""``python -m mlpoc.cli`` is the ``mlpoc`` console script."""

from mlpoc.cli.app import main

main()
