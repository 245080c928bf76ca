"""Tests of model.nn."""
