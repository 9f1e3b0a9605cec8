"""The cold-start baseline: a bare FastAPI hello app (uvicorn) and the same behind Mangum.

Copied next to functions/stream/run.sh as main.py, it starts as the streaming function does:
run.sh runs it as a script, which starts uvicorn with the same options.
"""

import os

from fastapi import FastAPI
from mangum import Mangum

app = FastAPI()


@app.get("/healthz")
async def healthz():
    return {"status": "ok"}


handler = Mangum(app, lifespan="off")

if __name__ == "__main__":
    import uvicorn

    port = int(os.environ.get("AWS_LWA_PORT") or os.environ.get("PORT") or 8080)
    uvicorn.run(app, host="127.0.0.1", port=port, access_log=False)
