"""The one exception type the command line turns into a one-line message and a non-zero exit."""


class WorldgameError(Exception):
    """A problem the user can fix: the message names the thing and says what to do."""


def shorten(value: object, limit: int = 80) -> str:
    """``str(value)`` cut to ``limit`` characters, for values from files quoted in a one-line error."""
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
