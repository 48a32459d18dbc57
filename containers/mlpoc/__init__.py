"""mlpoc: the runtime of an ML proof of concept shipped as a service on AWS."""

__version__ = "0.1.0"
