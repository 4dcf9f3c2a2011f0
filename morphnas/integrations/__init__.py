"""Adapters that let other tools drive a morphnas search through the SDK (``morphnas.client``).

Each adapter lives in its own module and imports its tool only there, so ``import morphnas``
never pulls an optional dependency: ``morphnas.integrations.ray`` needs ``morphnas[ray]``.
"""
