"""Fitting and choosing the search vector's blocks (``model.search_space``) on rated nodules."""
