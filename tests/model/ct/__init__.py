"""Tests of model.ct."""
