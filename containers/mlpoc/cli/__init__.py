"""The ``mlpoc`` command line: local mode, the demo, and the operator commands."""
