"""The one exception type for mistakes a user can fix."""


class UserError(Exception):
    """A problem with the user's input (data, arguments, files), not a bug.

    The CLI prints ``error: <message>`` on one line and exits with code 2, no traceback.
    The message names what is wrong and how to fix it.
    """

    exit_code = 2
