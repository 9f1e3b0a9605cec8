"""Streaming function: uvicorn serves the app behind Lambda Web Adapter (see run.sh)."""

import gc

# Everything start-up allocates lives as long as the process: a collection during the
# imports can free nothing (measured: none does) and costs ~30 ms. create_entry_app()
# freezes what start-up built and turns the collector back on.
gc.disable()

from chatrelay.api.app import create_entry_app

app = create_entry_app()
