"""``chatrelay.api.asgi:app``: the app built from the environment, for uvicorn."""

import gc

gc.disable()  # see functions/stream/main.py; create_entry_app() turns it back on

from chatrelay.api.app import create_entry_app

app = create_entry_app()
