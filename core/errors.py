"""The one exception type users see as a single line.

It lives in ``core`` because every layer may raise it, the device runner too.
"""


class InputError(Exception):
    """Bad input or environment: the CLI prints the message as one line and exits with 2."""
