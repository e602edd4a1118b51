"""The one-line error of training set-up problems."""


class SetupError(ValueError):
    """A training set-up problem worth one line to the user."""
