"""streaming: the relay, the follower, and the wire formats towards clients.

``RAW_SEND`` lives here, not in ``response.py``, so the app's middleware can name it without
importing the response machinery (the buffered API function never streams).
"""

RAW_SEND = "chatrelay.raw_send"
"""Scope key of the server's own ``send`` (set by the app, read by the event-stream response)."""
