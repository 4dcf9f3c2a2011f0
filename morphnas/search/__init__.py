"""Architecture search policies: edit-distance GP, tree-structured acquisition, random baseline.

numpy/scipy only. The entry point is :func:`morphnas.search.policy.propose`; what it remembers
between calls lives in one :class:`morphnas.search.cache.SearchCache`, made by the caller.
"""

from __future__ import annotations

from morphnas.search.cache import SearchCache
from morphnas.search.policy import Proposal, propose

__all__ = ["Proposal", "SearchCache", "propose"]
