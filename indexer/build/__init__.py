"""Catalogue builds: ``nodule-index build|add|verify|versions|rollback``."""
