"""The fake WeChat server API on a real socket, and logging in through it."""

from __future__ import annotations

import uuid

import httpx

from chatrelay_dev.mockllm.wechat_fake import WeChatFakeConfig, create_wechat_fake
from tests.support.servers import ServerThread

CONFIG = WeChatFakeConfig(risky_words=("forbidden-word", "违禁词"))


def start_wechat_fake(config: WeChatFakeConfig = CONFIG) -> ServerThread:
    return ServerThread(create_wechat_fake(config)).start()


def wechat_settings(fake: ServerThread, config: WeChatFakeConfig = CONFIG, **overrides) -> dict:
    """Settings overrides pointing an app at the fake."""
    return {"wechat_api_base": fake.url, "wechat_app_id": config.app_id, "wechat_app_secret": config.app_secret,
            **overrides}


def new_who() -> str:
    return f"wxuser-{uuid.uuid4().hex[:10]}"


def wechat_login(base_url: str, code: str) -> httpx.Response:
    return httpx.post(f"{base_url}/v1/auth/wechat", json={"code": code}, timeout=10)


def wechat_token(base_url: str, who: str) -> dict:
    """A fresh login of user ``who`` (a new code each time, as wx.login gives)."""
    response = wechat_login(base_url, f"{who}.{uuid.uuid4().hex[:8]}")
    response.raise_for_status()
    return response.json()
