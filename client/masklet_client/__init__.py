"""Python client for the Masklet HTTP API; ``masklet`` is its command line (``masklet_client.cli``)."""

from masklet_client.client import OPERATIONS, Client, Operation
from masklet_client.errors import JobFailed, MaskletConnectionError, MaskletError, WaitTimedOut

__all__ = ["Client", "OPERATIONS", "Operation", "MaskletError", "MaskletConnectionError", "JobFailed",
           "WaitTimedOut"]
