"""Tools run from the repository (`make ohif-demo`), not part of the installed package."""
