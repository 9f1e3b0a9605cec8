"""Streaming function: uvicorn serves the app behind Lambda Web Adapter (run.sh runs this file)."""

import gc
import os

# Everything start-up allocates lives as long as the process: a collection during the
# imports can free nothing (measured: none does) and costs ~30 ms. create_entry_app()
# freezes what start-up built and turns the collector back on.
gc.disable()

from chatrelay.api.app import create_entry_app

app = create_entry_app()

if __name__ == "__main__":
    # Started as a script, not as `python -m uvicorn main:app`: uvicorn's command line imports
    # the app from inside its event loop, some 40 frames deep, where CPython 3.12 unmaps and maps
    # again a chunk of its frame stack each time the import machinery's depth crosses the chunk's
    # edge (4,900 munmap calls before the first byte, against 800 from here: ~35 ms).
    import uvicorn

    port = int(os.environ.get("AWS_LWA_PORT") or os.environ.get("PORT") or 8080)  # the adapter's own fallbacks
    uvicorn.run(app, host="127.0.0.1", port=port, access_log=False)
