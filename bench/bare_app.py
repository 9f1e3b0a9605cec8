"""The cold-start baseline: a bare FastAPI hello app (uvicorn) and the same behind Mangum."""

from fastapi import FastAPI
from mangum import Mangum

app = FastAPI()


@app.get("/healthz")
async def healthz():
    return {"status": "ok"}


handler = Mangum(app, lifespan="off")
