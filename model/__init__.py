"""Shared kernel of nodule-search, in four wings and three top-level modules.

``ct`` (CT in and out, one door from an address to a volume), ``nn`` (the network and the search
vector), ``clinical`` (measurements, labels, the vote, SR and SEG), ``store`` (the catalogue on
disk); ``preprocessing`` (the one patch function), ``settings``, ``threads``. Never imports
``app`` or ``indexer``; nothing heavy runs at import (docs/architecture.md).
"""
