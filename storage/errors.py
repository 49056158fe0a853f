"""The one base class of t2v's own errors.

The CLI prints a `T2VError` in one line (the message says what went wrong and how to fix it) and
lets every other exception keep its traceback, because anything else is a bug, in t2v or below it.
It lives in the bottom layer so that storage, modeling, pipelines and flows can all raise it.
"""


class T2VError(Exception):
    """An error t2v raises on purpose: bad input, bad config, a missing file."""
