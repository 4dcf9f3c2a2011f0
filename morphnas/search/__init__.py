"""Architecture search policies: edit-distance GP, tree-structured acquisition, random baseline.

numpy/scipy only. The entry point is :func:`morphnas.search.policy.propose`.
"""

from __future__ import annotations

from morphnas.search.policy import Proposal, clear_caches, propose

__all__ = ["Proposal", "clear_caches", "propose"]
