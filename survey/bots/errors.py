"""The one error of the simulated participants."""


class BotError(Exception):
    """A bot could not go on: the page was refused, unreadable or never reached the end."""
