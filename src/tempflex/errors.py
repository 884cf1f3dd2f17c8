"""Errors the model and its input pipeline raise for bad input (the CLI turns ValueErrors into one-line messages)."""


class PlaceholderMismatchError(ValueError):
    """The prompt's placeholder tokens and the visual features differ in number."""
