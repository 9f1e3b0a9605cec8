"""Tracing is opt-in, costs nothing when off, and never records chat text."""

from chatrelay.settings import Settings
from chatrelay.tracing import get_tracer, traced


class FakeTracer:
    """The one Tracer method the API function uses, recording how it was asked."""

    def __init__(self):
        self.options = None

    def capture_lambda_handler(self, handler, **options):
        self.options = options

        def wrapped(event, context):
            return {"traced": True, **handler(event, context)}

        return wrapped


def test_off_by_default_and_when_the_deployment_says_so():
    assert Settings().trace_disabled is True
    assert get_tracer(Settings(), sdk_available=lambda: True) is None
    assert get_tracer(Settings(POWERTOOLS_TRACE_DISABLED="true"), sdk_available=lambda: True) is None


def test_on_without_the_xray_sdk_falls_back_to_platform_tracing():
    assert get_tracer(Settings(POWERTOOLS_TRACE_DISABLED="false"), sdk_available=lambda: False) is None


def test_untraced_handler_is_the_handler_itself():
    def handler(event, context):
        return {"statusCode": 200}

    assert traced(handler, None) is handler


def test_traced_handler_wraps_callables_and_never_captures_responses():
    class MangumLike:  # an instance without __name__, like Mangum
        def __call__(self, event, context):
            return {"statusCode": 200, "body": "an answer"}

    tracer = FakeTracer()
    handler = traced(MangumLike(), tracer)
    assert handler({}, None) == {"traced": True, "statusCode": 200, "body": "an answer"}
    assert tracer.options == {"capture_response": False, "capture_error": True}
