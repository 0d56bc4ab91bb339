"""One exception type for every problem a user can fix (bad corpus, bad checkpoint, bad setting).

The CLIs catch it and print its message without a traceback; anything else is a bug.
"""


class ChatbotError(Exception):
    """A problem with the user's input, named together with how to fix it."""
