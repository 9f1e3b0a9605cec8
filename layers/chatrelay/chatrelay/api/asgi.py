"""``chatrelay.api.asgi:app``: the app built from the environment, for uvicorn."""

from chatrelay.api.app import create_entry_app

app = create_entry_app()
