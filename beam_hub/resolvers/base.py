"""The interface every resolver implements."""

from __future__ import annotations

import abc

from beam_hub.cache.base import ModuleCache
from beam_hub.handles import Handle


class Resolver(abc.ABC):
    """Turns one family of handles into a local module directory.

    Register your own with :func:`beam_hub.register_resolver`; the first registered resolver whose
    ``is_supported`` returns True handles the call.
    """

    @abc.abstractmethod
    def is_supported(self, handle: Handle) -> bool:
        """True when this resolver knows how to fetch ``handle``."""

    @abc.abstractmethod
    def __call__(self, handle: Handle, cache: ModuleCache) -> str:
        """Return a local directory holding the module (usually through ``cache.fetch``)."""
