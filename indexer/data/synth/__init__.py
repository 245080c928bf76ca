"""Synthetic LUNA16-format data: chest phantom, nodules with real LIDC reads, writers."""
