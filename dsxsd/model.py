"""The annotation model's former module name: use :mod:`dsxsd.annotations` (or the names
``dsxsd`` exports). Kept so that code written against the old name goes on working."""

from .annotations import *  # noqa: F401,F403
from .annotations import __all__  # noqa: F401
