"""Tests of model.store."""
