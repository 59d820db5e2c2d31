"""The one exception type the command line turns into a one-line message and a non-zero exit."""


class WorldgameError(Exception):
    """A problem the user can fix: the message names the thing and says what to do."""
