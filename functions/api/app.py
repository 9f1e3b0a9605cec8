"""API function: the non-streaming routes through Mangum (which buffers; never streams)."""

from mangum import Mangum

from chatrelay.api.app import create_app

handler = Mangum(create_app(), lifespan="off")
