"""Shared kernel of nodule-search: geometry, CT reading, the one patch function, the network.

Never imports ``app`` or ``indexer``. Import submodules directly; nothing heavy runs at import.
"""
