"""Streaming function: uvicorn serves the app behind Lambda Web Adapter (see run.sh)."""

from chatrelay.api.app import create_entry_app

app = create_entry_app()
