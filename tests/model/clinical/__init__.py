"""Tests of model.clinical."""
