"""The one exception type users see as a single line.

It lives in ``deploy`` because every layer may raise it and ``deploy`` imports nothing of ours.
"""


class InputError(Exception):
    """Bad input or environment: the CLI prints the message as one line and exits with 2."""
