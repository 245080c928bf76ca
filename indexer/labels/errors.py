"""The one error type of the label sources."""


class LabelSourceError(ValueError):
    """A label source (XML file, database, table) is missing or malformed; the message names it."""
