"""The one exception type that means "the user asked for something that cannot be done"."""


class CatdogError(Exception):
    """A user mistake or an unusable input; the CLI prints it as one line and exits non-zero."""
