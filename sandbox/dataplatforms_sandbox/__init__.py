"""Local emulator of the APIs behind tap-dataplatforms (demo and tests; never on by default).

Each platform is one module of this package registering a ``framework.Platform`` subclass;
see ``framework.py`` for the registration API and ``server.py`` for the server and CLI.
"""

from .credentials import CREDENTIALS
from .server import Sandbox

__all__ = ["CREDENTIALS", "Sandbox"]
