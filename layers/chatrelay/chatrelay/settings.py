"""All runtime configuration, read once from the environment.

Every environment variable the service reads is named here and nowhere else
(the Powertools ``shared/constants.py`` habit). Explicit constructor arguments win
over the environment, so tests build a ``Settings(...)`` and pass it to
``create_app`` instead of patching ``os.environ``.

Only the documented names are read, exactly as spelled (``CHATRELAY_DEV_AUTH``): the
environment is matched case-sensitively and never by field name, so neither
``dev_auth=1`` nor ``DEV_AUTH=1`` nor the documented name in lower case turns anything on. Field
names are for the constructor only (``Settings(dev_auth=True)``).

Besides :class:`Settings`, two readers serve the provider registry: the vendor
presets' variables (:data:`VENDOR_VARIABLES`, read by :func:`vendor_variables`) and a
variable a providers file names (``api_key_env``, read by :func:`environment_variable`).
Both take the environment as an argument (default: the process's), for tests.
"""

# No `from __future__ import annotations`: pydantic and FastAPI would evaluate each string annotation
# (a compile and an eval each) when the models and routes are built at start-up.

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, get_origin

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, field_validator


def _env(*names: str) -> AliasChoices:
    """The environment variables a setting is read from (upper case, documented)."""
    return AliasChoices(*names)


class SettingsError(ValueError):
    """A list setting's variable is not JSON."""


def _from_environment(fields: Mapping[str, Any], given: Mapping[str, object],
                      environ: Mapping[str, str]) -> dict[str, object]:
    """The settings the environment sets, under the variable that set each, for the fields the
    constructor did not give (by field name or variable name): the constructor wins.

    A setting is read from its documented names only, in their order (``AWS_REGION``, then
    ``AWS_DEFAULT_REGION``), spelled exactly, never under its field name. Values stay strings
    for pydantic to convert as it converts any input (``"1"`` is true), except a list's, which
    is JSON (``["a", "b"]``): what pydantic-settings did, without its import at every cold start
    (~9 ms; it and python-dotenv are no longer in the layer).
    """
    found: dict[str, object] = {}
    for name, info in fields.items():
        names = info.validation_alias.choices
        if name in given or any(alias in given for alias in names):
            continue
        alias = next((alias for alias in names if alias in environ), None)
        if alias is None:
            continue
        value: object = environ[alias]
        if get_origin(info.annotation) in (list, dict, set, tuple):
            try:
                value = json.loads(value)  # type: ignore[arg-type]
            except ValueError as exc:
                raise SettingsError(f'error parsing value for field "{name}" from {alias}: not JSON') from exc
        found[alias] = value
    return found


def _default_h5_dir() -> str | None:
    """The repo's ``clients/h5`` (``Path(chatrelay.__file__).parents[3]``) when it exists."""
    candidate = Path(__file__).resolve().parents[3] / "clients" / "h5"
    return str(candidate) if (candidate / "index.html").is_file() else None


class Settings(BaseModel):
    # validate_default: defaults are checked like given values (as pydantic-settings did).
    model_config = ConfigDict(extra="ignore", populate_by_name=True, validate_default=True)

    def __init__(self, **values: Any) -> None:
        # The constructor's values, then the environment (no .env file, no secrets directory).
        super().__init__(**{**_from_environment(type(self).model_fields, values, os.environ), **values})

    # --- storage -----------------------------------------------------------
    chat_table: str = Field("chatrelay-chat", validation_alias=_env("CHAT_TABLE"))
    dynamodb_endpoint_url: str | None = Field(
        None, validation_alias=_env("DYNAMODB_ENDPOINT_URL")
    )
    aws_region: str = Field(
        "us-east-1", validation_alias=_env("AWS_REGION", "AWS_DEFAULT_REGION")
    )
    retention_days: int = Field(
        0, ge=0, validation_alias=_env("CHATRELAY_RETENTION_DAYS")
    )
    """Days a turn is kept before DynamoDB's TTL removes it; 0 keeps it forever."""
    storage_threads: int = Field(
        64, ge=1, validation_alias=_env("CHATRELAY_STORAGE_THREADS")
    )
    """DynamoDB calls in flight at once (and pooled connections); worker threads only for an injected
    blocking client (botocore's), since the app's own client calls DynamoDB on the event loop. The name
    is kept for existing deployments."""

    # --- identity ----------------------------------------------------------
    token_secret: SecretStr | None = Field(
        None, validation_alias=_env("CHATRELAY_TOKEN_SECRET")
    )
    token_secret_name: str | None = Field(
        None, validation_alias=_env("CHATRELAY_TOKEN_SECRET_NAME")
    )
    """Where the token secret lives: ``ssm:/name`` or ``secretsmanager:name`` (see secrets.py)."""
    token_issuer: str = Field("chatrelay", validation_alias=_env("CHATRELAY_TOKEN_ISSUER"))
    token_audience: str = Field(
        "chatrelay-client", validation_alias=_env("CHATRELAY_TOKEN_AUDIENCE")
    )
    token_ttl_seconds: int = Field(
        3600, gt=0, validation_alias=_env("CHATRELAY_TOKEN_TTL_SECONDS")
    )
    dev_auth: bool = Field(False, validation_alias=_env("CHATRELAY_DEV_AUTH"))
    """Enables ``POST /v1/auth/dev``: local development and tests only (a warning is logged at start-up
    unless ``dev_stack``)."""
    dev_stack: bool = Field(False, validation_alias=_env("CHATRELAY_DEVSTACK"))
    """Set by ``make dev`` (the devstack in devtools/): dev login is expected there, so no warning."""
    refresh_token_ttl_seconds: int = Field(
        30 * 86400, gt=0, validation_alias=_env("CHATRELAY_REFRESH_TOKEN_TTL_SECONDS")
    )
    """Lifetime of a refresh token; each use rotates it and starts a new lifetime."""

    # --- WeChat (login, content security) ----------------------------------
    wechat_api_base: str = Field(
        "https://api.weixin.qq.com", validation_alias=_env("CHATRELAY_WECHAT_API_BASE")
    )
    wechat_app_id: str | None = Field(None, validation_alias=_env("CHATRELAY_WECHAT_APP_ID"))
    wechat_app_secret: SecretStr | None = Field(
        None, validation_alias=_env("CHATRELAY_WECHAT_APP_SECRET")
    )
    wechat_app_secret_name: str | None = Field(
        None, validation_alias=_env("CHATRELAY_WECHAT_APP_SECRET_NAME")
    )
    """Where the app secret lives (``ssm:/name`` or ``secretsmanager:name``) when not given directly."""
    wechat_timeout: float = Field(5.0, gt=0, validation_alias=_env("CHATRELAY_WECHAT_TIMEOUT"))
    """Seconds a call to the WeChat server API may take (login, access token, msg_sec_check)."""

    # --- abuse control (0 disables a limit) ---------------------------------
    rate_limit_per_minute: int = Field(
        0, ge=0, validation_alias=_env("CHATRELAY_RATE_LIMIT_PER_MINUTE")
    )
    """Chat requests a user may start per calendar minute (UTC)."""
    token_quota_per_day: int = Field(
        0, ge=0, validation_alias=_env("CHATRELAY_TOKEN_QUOTA_PER_DAY")
    )
    """Model tokens (prompt + completion) a user may use per UTC day; checked when a turn starts."""
    max_concurrent_streams: int = Field(
        0, ge=0, validation_alias=_env("CHATRELAY_MAX_CONCURRENT_STREAMS")
    )
    """Answers a user may have generating at once."""
    stream_lease_seconds: float | None = Field(
        None, gt=0, validation_alias=_env("CHATRELAY_STREAM_LEASE_SECONDS")
    )
    """How long a stream's slot is held if its instance dies before releasing it; default
    ``max_answer_seconds`` + 60 (no live stream runs longer)."""
    max_body_bytes: int = Field(
        64 * 1024, gt=0, validation_alias=_env("CHATRELAY_MAX_BODY_BYTES")
    )
    body_read_timeout: float = Field(15.0, gt=0, validation_alias=_env("CHATRELAY_BODY_READ_TIMEOUT"))
    """Seconds a request body may take to arrive in full (408 after): a stalled upload must not hold a
    connection under a self-hosted uvicorn (Lambda receives whole requests)."""
    max_json_depth: int = Field(16, gt=0, validation_alias=_env("CHATRELAY_MAX_JSON_DEPTH"))
    max_conversation_turns: int = Field(
        200, ge=0, validation_alias=_env("CHATRELAY_MAX_CONVERSATION_TURNS")
    )

    # --- content security (off unless configured) ---------------------------
    content_safety: Literal["off", "keywords", "wechat"] = Field(
        "off", validation_alias=_env("CHATRELAY_CONTENT_SAFETY")
    )
    """``wechat``: msg_sec_check v2 for users with a WeChat openid, plus the keyword list (if
    any) for everyone; ``keywords``: the keyword list only."""
    content_safety_keywords: list[str] = Field(
        default_factory=list, validation_alias=_env("CHATRELAY_CONTENT_SAFETY_KEYWORDS")
    )
    """JSON list of words that mark a text as risky (case-insensitive substring match)."""
    content_safety_scene: int = Field(
        2, ge=1, le=4, validation_alias=_env("CHATRELAY_CONTENT_SAFETY_SCENE")
    )
    """msg_sec_check scene: 1 profile, 2 comment, 3 forum, 4 social log."""
    content_safety_block_review: bool = Field(
        False, validation_alias=_env("CHATRELAY_CONTENT_SAFETY_BLOCK_REVIEW")
    )
    """Treat ``review`` verdicts as blocked too (default: only ``risky`` is)."""
    content_safety_fail_closed: bool = Field(
        False, validation_alias=_env("CHATRELAY_CONTENT_SAFETY_FAIL_CLOSED")
    )
    """When the checker itself fails (vendor down): block (1) or let the text through, logged (0)."""
    answer_safety_piece_chars: int = Field(
        500, ge=50, le=2400, validation_alias=_env("CHATRELAY_ANSWER_SAFETY_PIECE_CHARS")
    )
    """The streamed answer is checked in pieces of this many new characters (vendor limit 2500)."""

    # --- upstream LLM ------------------------------------------------------
    llm_base_url: str | None = Field(None, validation_alias=_env("LLM_BASE_URL"))
    llm_api_key: SecretStr | None = Field(None, validation_alias=_env("LLM_API_KEY"))
    llm_api_key_secret_name: str | None = Field(
        None, validation_alias=_env("LLM_API_KEY_SECRET_NAME")
    )
    llm_model: str | None = Field(None, validation_alias=_env("LLM_MODEL"))
    default_model: str = Field("default", validation_alias=_env("CHATRELAY_DEFAULT_MODEL"))
    """Preset used when a request names no model."""
    mock_llm_base_url: str = Field(
        "http://127.0.0.1:8001/v1", validation_alias=_env("MOCK_LLM_BASE_URL")
    )
    providers_file: str | None = Field(
        None, validation_alias=_env("CHATRELAY_PROVIDERS_FILE")
    )
    """YAML or JSON file of named providers, fallbacks and per-provider timeouts (see docs/providers.md)."""
    system_prompt: str = Field(
        "You are a helpful assistant.", validation_alias=_env("CHATRELAY_SYSTEM_PROMPT")
    )
    max_process_streams: int = Field(
        0, ge=0, validation_alias=_env("CHATRELAY_MAX_PROCESS_STREAMS")
    )
    """Live answers one process takes on; past it a question is 503 ``overloaded`` (0: no cap)."""
    max_followers_per_message: int = Field(
        4, ge=0, validation_alias=_env("CHATRELAY_MAX_FOLLOWERS_PER_MESSAGE")
    )
    max_followers_per_user: int = Field(
        8, ge=0, validation_alias=_env("CHATRELAY_MAX_FOLLOWERS_PER_USER")
    )
    """Streams following a running answer (resume, a retried requestId) at once, per answer and per
    user, in this process (0: no cap); each polls the table, so they are bounded (429)."""
    allow_client_system_messages: bool = Field(
        False, validation_alias=_env("CHATRELAY_ALLOW_CLIENT_SYSTEM_MESSAGES")
    )
    """POST /v1/chat/completions: pass the client's own ``system`` messages on (after the operator's)."""
    context_max_turns: int = Field(
        10, ge=0, validation_alias=_env("CHATRELAY_CONTEXT_MAX_TURNS")
    )
    context_max_chars: int = Field(
        12000, ge=0, validation_alias=_env("CHATRELAY_CONTEXT_MAX_CHARS")
    )
    max_output_tokens: int | None = Field(
        None, validation_alias=_env("CHATRELAY_MAX_OUTPUT_TOKENS")
    )
    connect_timeout: float = Field(10.0, gt=0, validation_alias=_env("CHATRELAY_CONNECT_TIMEOUT"))
    first_token_timeout: float = Field(
        60.0, gt=0, validation_alias=_env("CHATRELAY_FIRST_TOKEN_TIMEOUT")
    )
    idle_timeout: float = Field(60.0, gt=0, validation_alias=_env("CHATRELAY_IDLE_TIMEOUT"))
    """Longest silence between two upstream chunks before the turn fails."""

    # --- stream behaviour --------------------------------------------------
    ping_interval: float = Field(15.0, ge=0, validation_alias=_env("CHATRELAY_PING_INTERVAL"))
    stop_poll_interval: float = Field(
        1.0, gt=0, validation_alias=_env("CHATRELAY_STOP_POLL_INTERVAL")
    )
    """How often a running stream reads its turn for a stop request (Lambda has no disconnect)."""
    finish_on_disconnect: bool = Field(
        False, validation_alias=_env("CHATRELAY_FINISH_ON_DISCONNECT")
    )
    """Keep generating a turn whose client went away (so it can resume), instead of stopping it."""
    checkpoint_interval: float = Field(
        1.0, gt=0, validation_alias=_env("CHATRELAY_CHECKPOINT_INTERVAL")
    )
    """Longest time new answer text waits before it is saved (one write per checkpoint)."""
    heartbeat_interval: float = Field(
        10.0, gt=0, validation_alias=_env("CHATRELAY_HEARTBEAT_INTERVAL")
    )
    stale_after: float = Field(120.0, gt=0, validation_alias=_env("CHATRELAY_STALE_AFTER"))
    """A ``streaming`` turn without a heartbeat for this long lost its stream: read as ``failed``."""
    resume_poll_interval: float = Field(
        0.5, gt=0, validation_alias=_env("CHATRELAY_RESUME_POLL_INTERVAL")
    )
    lambda_deadline_margin: float = Field(
        3.0, ge=0, validation_alias=_env("CHATRELAY_LAMBDA_DEADLINE_MARGIN")
    )
    """Seconds before the Lambda invocation's deadline at which a turn ends ``truncated``."""
    trust_lambda_context: bool = Field(
        False, validation_alias=_env("CHATRELAY_TRUST_LAMBDA_CONTEXT")
    )
    """Read the ``x-amzn-lambda-context`` header (its deadline, request id): only behind Lambda Web
    Adapter, which sets it and overwrites a client's. Off elsewhere, where any client could send it."""
    snapstart_before_path: str | None = Field(
        None, validation_alias=_env("AWS_LWA_SNAPSTART_BEFORE_CHECKPOINT_PATH")
    )
    """Lambda Web Adapter's SnapStart hooks (its own variables, read here too): the app serves an
    empty ``POST`` to this path (close pooled connections before the snapshot) and to
    ``snapstart_after_path`` (rebuild clients, re-read secrets, reseed after a restore); see
    chatrelay/snapshot.py. The adapter answers outside requests for either path with 403."""
    snapstart_after_path: str | None = Field(
        None, validation_alias=_env("AWS_LWA_SNAPSTART_AFTER_RESTORE_PATH")
    )
    max_answer_seconds: float = Field(
        600.0, gt=0, validation_alias=_env("CHATRELAY_MAX_ANSWER_SECONDS")
    )
    max_answer_chars: int = Field(
        100_000, gt=0, validation_alias=_env("CHATRELAY_MAX_ANSWER_CHARS")
    )
    """Hard cap on the stored answer; DynamoDB items stop at 400 KB."""
    max_prompt_chars: int = Field(
        8000, gt=0, validation_alias=_env("CHATRELAY_MAX_PROMPT_CHARS")
    )

    # --- operations --------------------------------------------------------
    trace_disabled: bool = Field(
        True, validation_alias=_env("POWERTOOLS_TRACE_DISABLED")
    )
    """X-Ray subsegments in the API function (tracing.py); off unless the deployment turns it on."""

    # --- HTTP --------------------------------------------------------------
    cors_origins: list[str] = Field(
        default_factory=list, validation_alias=_env("CHATRELAY_CORS_ORIGINS")
    )
    """JSON list of allowed origins, e.g. ``["https://example.com"]``; empty disables CORS."""
    serve_h5: bool = Field(True, validation_alias=_env("CHATRELAY_SERVE_H5"))
    h5_dir: str | None = Field(default_factory=_default_h5_dir, validation_alias=_env("CHATRELAY_H5_DIR"))
    """Directory of the H5 chat page served at ``/``; default the repo's ``clients/h5``; empty disables it."""


    @field_validator("llm_base_url", "llm_model", "token_secret_name", "llm_api_key_secret_name", "providers_file",
                     "wechat_app_id", "wechat_app_secret_name", "snapstart_before_path", "snapstart_after_path",
                     mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value


OPENAI_COMPATIBLE_VENDORS = ("openai", "deepseek", "qwen", "zhipu", "baidu", "hunyuan", "moonshot")

VENDOR_VARIABLES: dict[str, dict[str, str]] = {
    **{name: {"api_key": f"{name.upper()}_API_KEY", "base_url": f"{name.upper()}_BASE_URL",
              "model": f"{name.upper()}_MODEL"} for name in OPENAI_COMPATIBLE_VENDORS},
    "anthropic": {"api_key": "ANTHROPIC_API_KEY", "base_url": "ANTHROPIC_BASE_URL", "model": "ANTHROPIC_MODEL"},
    "ernie": {"api_key": "ERNIE_API_KEY", "secret_key": "ERNIE_SECRET_KEY", "base_url": "ERNIE_BASE_URL",
              "model": "ERNIE_MODEL"},
    "bedrock": {"model": "BEDROCK_MODEL", "base_url": "BEDROCK_ENDPOINT_URL", "region": "BEDROCK_REGION"},
}
"""Environment preset name -> :class:`VendorVariables` field -> the variable that sets it."""


@dataclass(frozen=True, slots=True)
class VendorVariables:
    """What the environment says about one vendor preset; unset (or empty) variables are ``None``."""

    api_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    """Baidu ERNIE v1: the secret key paired with the API key."""
    base_url: str | None = None
    model: str | None = None
    region: str | None = None
    """Bedrock: the AWS region."""

    def has(self, *names: str) -> bool:
        return all(getattr(self, name) for name in names)



def vendor_variables(environ: Mapping[str, str] | None = None) -> dict[str, VendorVariables]:
    """Each environment preset's variables (see ``VENDOR_VARIABLES``), from ``environ`` or the process's."""
    env = os.environ if environ is None else environ
    return {preset: VendorVariables(**{name: env.get(variable) or None for name, variable in variables.items()})
            for preset, variables in VENDOR_VARIABLES.items()}


def environment_variable(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The variable a providers file names for a key (``api_key_env``, ``secret_key_env``); unset or empty: None."""
    return (os.environ if environ is None else environ).get(name) or None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings()
