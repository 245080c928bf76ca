"""Fitting and choosing the search vector's blocks (``model.nn.search_space``) on rated nodules."""
