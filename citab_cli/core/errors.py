"""The one exception type users see."""


class CitabError(Exception):
    """A user-fixable problem: the message says what is wrong, where, and what to do.

    The command layer prints it as one red line and exits with status 1.
    """
