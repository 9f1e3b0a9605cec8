"""The H5 chat page (clients/h5) in real headless Chromium against the local stack.

Chromium is Debian's ``/usr/bin/chromium`` driven by Playwright for Python (never
``playwright install``). The page talks to the app on 127.0.0.1, which talks to the fake
upstream; the tests steer the answers with ``[mock ...]`` directives in the prompt.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from chatrelay_dev.mockllm import answer_text
from tests.conftest import login
from tests.support.servers import ServerThread, wait_until

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PHONE = {"width": 390, "height": 844}
# The README's screenshot (docs/screenshot-h5.png) is refreshed with H5_SCREENSHOT=docs/screenshot-h5.png.
SCREENSHOT = Path(__file__).resolve().parents[2] / os.environ.get("H5_SCREENSHOT", "tests/artifacts/screenshot-h5.png")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Page:
    """A phone-sized page that records console errors and uncaught exceptions."""

    def __init__(self, browser, init_script: str | None = None) -> None:
        self.context = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True,
                                           locale="zh-CN")
        if init_script:
            self.context.add_init_script(init_script)
        self.page = self.context.new_page()
        self.page.set_default_timeout(15_000)
        self.errors: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        self.page.on("console", lambda msg: msg.type == "error" and self.errors.append(f"console: {msg.text}"))

    def open(self, base_url: str, token: str | None = None) -> None:
        self.page.goto(f"{base_url}/" + (f"#token={token}" if token else ""))
        self.wait_ready()

    def wait_ready(self) -> None:
        self.page.wait_for_selector("html[data-ready=true]", state="attached")

    def ask(self, prompt: str) -> None:
        self.page.fill("#input", prompt)
        self.page.press("#input", "Enter")

    def turns(self):
        return self.page.locator("#thread .turn")

    def last_turn(self):
        return self.turns().last

    def wait_turns(self, count: int) -> None:
        self.page.wait_for_function("n => document.querySelectorAll('#thread .turn').length === n", arg=count)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def phone(browser) -> Iterator[Page]:
    page = Page(browser)
    yield page
    page.close()
    assert not page.errors, page.errors


def _messages(base_url: str, token: str, conversation_id: str) -> list[dict]:
    response = httpx.get(f"{base_url}/v1/conversations/{conversation_id}/messages",
                         headers={"Authorization": f"Bearer {token}"}, timeout=10)
    response.raise_for_status()
    return response.json()["items"]


RECORD_RENDERS = """() => {
  window.__renders = [];
  const thread = document.getElementById('thread');
  new MutationObserver(() => {
    const turns = thread.querySelectorAll('.turn');
    const last = turns[turns.length - 1];
    if (!last) return;
    window.__renders.push({ len: last.querySelector('.answer').textContent.length, status: last.dataset.status });
  }).observe(thread, { childList: true, subtree: true, characterData: true, attributes: true,
                       attributeFilter: ['data-status'] });
}"""


# --------------------------------------------------------------------------- serving


def test_page_is_served_at_root_with_strict_security_headers(app_server):
    page = httpx.get(f"{app_server.url}/", timeout=10)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    for directive in ("default-src 'self'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:",
                      "connect-src 'self'", "frame-ancestors 'self'"):
        assert directive in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert '<script type="module" src="app.js">' in page.text
    assert "<script>" not in page.text and " style=" not in page.text  # nothing inline

    module = httpx.get(f"{app_server.url}/app.js", timeout=10)
    assert module.status_code == 200 and "javascript" in module.headers["content-type"]
    assert module.headers["x-content-type-options"] == "nosniff"

    # The API keeps its own responses: no page headers on it, JSON 404s for unknown routes.
    health = httpx.get(f"{app_server.url}/healthz", timeout=10)
    assert health.json() == {"status": "ok"} and "content-security-policy" not in health.headers
    missing = httpx.get(f"{app_server.url}/v1/nope", timeout=10)
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"


def test_page_can_be_disabled_or_pointed_elsewhere(start_app, tmp_path):
    off = start_app(h5_dir="")
    assert httpx.get(f"{off.url}/", timeout=10).status_code == 404
    (tmp_path / "index.html").write_text("<!doctype html><title>custom</title>")
    custom = start_app(h5_dir=str(tmp_path))
    response = httpx.get(f"{custom.url}/", timeout=10)
    assert response.status_code == 200 and "custom" in response.text
    assert response.headers["x-content-type-options"] == "nosniff"


def test_without_a_token_and_without_dev_login_the_page_asks_to_come_from_the_mini_program(start_app, phone):
    server = start_app(dev_auth=False)
    phone.open(server.url)
    assert phone.page.is_disabled("#input")
    assert "未登录" in phone.page.get_attribute("#input", "placeholder")
    phone.errors[:] = [e for e in phone.errors if "404" not in e]  # the refused dev login


# --------------------------------------------------------------------------- the chat flow


def test_streams_stops_restores_rates_lists_and_regenerates(app_server, mock_llm, user, phone):
    token = login(app_server.url, user)
    page = phone.page
    phone.open(app_server.url, token)
    assert "token=" not in page.url  # the fragment is dropped once read
    page.evaluate(RECORD_RENDERS)

    # 1. A slowly streamed answer grows on screen in several renders before it is done.
    phone.ask("给我一个示例回答 [mock tokens=65 interval=0.04]")
    first = phone.last_turn()
    page.wait_for_selector("#thread .turn[data-status=complete]")
    renders = page.evaluate("window.__renders")
    growing = {r["len"] for r in renders if r["status"] == "streaming" and r["len"] > 0}
    assert len(growing) >= 3, renders
    assert first.locator(".ai-label").inner_text() == "AI 生成"
    assert first.locator(".answer li").count() == 2
    assert "print('hello, chatrelay')" in first.locator(".answer pre code").inner_text()
    conversation_id = page.evaluate("localStorage.getItem(Object.keys(localStorage).find(k => k.startsWith('chatrelay.conversation.')))")
    [stored] = _messages(app_server.url, token, conversation_id)
    assert stored["status"] == "complete" and stored["answer"] == answer_text(65)
    assert first.get_attribute("data-message-id") == stored["messageId"]

    # 2. Stop mid-answer: the fake holds after 6 chunks and its gate is never released.
    gate = uuid.uuid4().hex[:8]
    phone.ask(f"请停下 [mock tokens=40 hold_after=6 gate={gate} interval=0]")
    phone.wait_turns(2)
    second = phone.last_turn()
    page.wait_for_function(
        "() => { const t = [...document.querySelectorAll('#thread .turn')].pop();"
        " return t.querySelector('.answer').textContent.length > 0; }")
    assert page.is_visible("#stop") and not page.is_visible("#send")
    page.click("#stop")
    page.wait_for_selector("#thread .turn:nth-child(2)[data-status=stopped]")
    assert second.locator(".answer").inner_text() == answer_text(6)
    assert second.locator(".badge").inner_text() == "已停止"
    assert page.is_visible("#send")
    turns = wait_until(lambda: (t := _messages(app_server.url, token, conversation_id))
                       and len(t) == 2 and t[1]["status"] != "streaming" and t)
    assert turns[1]["status"] == "stopped" and turns[1]["answer"] == answer_text(6)

    # 3. A reload restores both turns from the server, with their statuses.
    page.reload()
    phone.wait_ready()
    phone.wait_turns(2)
    assert [t.get_attribute("data-status") for t in phone.turns().all()] == ["complete", "stopped"]
    restored_first, restored_second = phone.turns().all()
    assert restored_first.locator(".badge").is_hidden()
    assert restored_second.locator(".badge").inner_text() == "已停止"
    assert restored_second.locator(".answer").inner_text() == answer_text(6)
    assert all(t.locator(".ai-label").inner_text() == "AI 生成" for t in phone.turns().all())

    # 4. Like is stored; a second click clears it; dislike is stored as -1.
    def useful() -> int:
        return _messages(app_server.url, token, conversation_id)[0]["useful"]

    like, dislike = restored_first.locator(".like"), restored_first.locator(".dislike")
    like.click()
    page.wait_for_function("() => document.querySelector('#thread .turn .like').getAttribute('aria-pressed') === 'true'")
    wait_until(lambda: useful() == 1)
    like.click()
    wait_until(lambda: useful() == 0)
    assert like.get_attribute("aria-pressed") == "false"
    dislike.click()
    wait_until(lambda: useful() == -1)
    like.click()
    wait_until(lambda: useful() == 1)
    assert dislike.get_attribute("aria-pressed") == "false" and like.get_attribute("aria-pressed") == "true"
    page.evaluate("document.getElementById('messages').scrollTop = 0")
    SCREENSHOT.parent.mkdir(exist_ok=True)
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT))

    # 5. The conversation list loads a conversation's messages.
    page.click("#new-chat")
    phone.wait_turns(0)
    assert page.is_visible("#empty")
    page.click("#open-list")
    entry = page.locator(f".conversation[data-conversation-id='{conversation_id}']")
    entry.wait_for()
    assert "给我一个示例回答" in entry.inner_text()
    entry.click()
    phone.wait_turns(2)
    assert page.is_hidden("#drawer")

    # 6. Regenerate asks the last question again as a new request (new requestId).
    httpx.post(f"{mock_llm.url}/_mock/gates/{gate}", timeout=5).raise_for_status()
    phone.last_turn().locator(".regen").click()
    phone.wait_turns(3)
    page.wait_for_selector("#thread .turn:nth-child(3)[data-status=complete]")
    turns = _messages(app_server.url, token, conversation_id)
    assert len(turns) == 3
    assert turns[2]["question"] == turns[1]["question"] and turns[2]["answer"] == answer_text(40)
    assert turns[1]["requestId"] and turns[2]["requestId"] and turns[1]["requestId"] != turns[2]["requestId"]
    assert phone.last_turn().get_attribute("data-message-id") == turns[2]["messageId"]


def test_a_dropped_stream_resumes_with_a_get_and_the_question_is_never_posted_again(app_server, user, phone):
    token = login(app_server.url, user)
    page = phone.page
    posts: list[str] = []
    resumes: list[str] = []

    def cut_after_four_deltas(route) -> None:
        # The real answer, cut like a dropped mobile connection: comment, meta, 4 deltas, no done.
        posts.append(route.request.url)
        response = route.fetch()
        blocks = response.body().split(b"\n\n")
        route.fulfill(status=response.status, headers=response.headers, body=b"\n\n".join(blocks[:6]) + b"\n\n")

    page.route("**/v1/chat/stream", cut_after_four_deltas)
    page.on("request", lambda r: "/stream?after=" in r.url and resumes.append(r.url))
    phone.open(app_server.url, token)
    phone.ask("断线重连 [mock tokens=12]")
    page.wait_for_selector("#thread .turn[data-status=complete]")
    answer = phone.last_turn().locator(".answer").inner_text()
    assert answer.startswith("Sure! Here is a streamed answer.") and "你好" in answer
    assert len(posts) == 1
    message_id = phone.last_turn().get_attribute("data-message-id")
    assert resumes == [f"{app_server.url}/v1/messages/{message_id}/stream?after={len(answer_text(4))}"]
    conversation_id = page.evaluate("localStorage.getItem(Object.keys(localStorage).find(k => k.startsWith('chatrelay.conversation.')))")
    [turn] = _messages(app_server.url, token, conversation_id)
    assert turn["answer"] == answer_text(12)


def test_auto_scroll_follows_only_a_reader_at_the_bottom(app_server, user, phone):
    token = login(app_server.url, user)
    page = phone.page
    phone.open(app_server.url, token)
    phone.ask("长回答 [mock tokens=400 interval=0.02]")
    gap = "(() => { const m = document.getElementById('messages'); return m.scrollHeight - m.scrollTop - m.clientHeight; })()"
    # The answer outgrows the screen while the view stays pinned to the bottom.
    page.wait_for_function("() => { const m = document.getElementById('messages');"
                           " return m.scrollHeight > m.clientHeight + 400; }")
    page.wait_for_function(f"() => {gap} < 5")
    assert page.get_attribute("#thread .turn", "data-status") == "streaming"
    # The reader scrolls up: new text no longer moves the view.
    page.evaluate("document.getElementById('messages').scrollTop = 100")
    height = page.evaluate("document.getElementById('messages').scrollHeight")
    page.wait_for_function("h => document.getElementById('messages').scrollHeight > h + 100", arg=height)
    assert page.evaluate("document.getElementById('messages').scrollTop") == 100
    assert page.is_visible("#to-bottom")
    # Back at the bottom, it follows again.
    page.click("#to-bottom")
    page.wait_for_function(f"() => {gap} < 5")
    height = page.evaluate("document.getElementById('messages').scrollHeight")
    page.wait_for_function("h => document.getElementById('messages').scrollHeight > h + 100", arg=height)
    page.wait_for_function(f"() => {gap} < 5")
    page.wait_for_selector("#thread .turn[data-status=complete]", timeout=30_000)


# --------------------------------------------------------------------------- safety


class _HtmlUpstream:
    """An OpenAI-compatible upstream whose answer is hostile HTML and links."""

    ANSWER = (
        "Hi <img src=x onerror=\"window.__pwned='img'\"> <script>window.__pwned='script'</script>\n\n"
        "**bold** [bad](javascript:window.__pwned='link') [good](https://example.com/a?b=1&c=2)\n\n"
        "<a href=\"javascript:window.__pwned='a'\">raw anchor</a>"
    )

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/chat/completions", self.chat, methods=["POST"])])

    async def chat(self, request: Request) -> StreamingResponse:
        await request.json()

        def chunk(delta: dict, finish: str | None = None) -> bytes:
            body = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "html",
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            return b"data: " + json.dumps(body).encode() + b"\n\n"

        async def body():
            yield chunk({"role": "assistant", "content": ""})
            for i in range(0, len(self.ANSWER), 7):
                yield chunk({"content": self.ANSWER[i:i + 7]})
            yield chunk({}, "stop")
            yield b"data: [DONE]\n\n"

        return StreamingResponse(body(), media_type="text/event-stream")


@pytest.fixture(scope="module")
def html_app(start_app) -> Iterator[ServerThread]:
    upstream = ServerThread(_HtmlUpstream().app()).start()
    yield start_app(mock_llm_base_url=f"{upstream.url}/v1")
    upstream.stop()


def test_html_and_script_links_in_answers_and_questions_are_inert(html_app, user, phone):
    token = login(html_app.url, user)
    page = phone.page
    phone.open(html_app.url, token)
    phone.ask("<img src=x onerror=\"window.__pwned='question'\"> 请用 HTML 回答")
    page.wait_for_selector("#thread .turn[data-status=complete]")
    turn = phone.last_turn()
    answer = turn.locator(".answer")
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#thread img, #thread script").count() == 0
    text = answer.inner_text()
    assert "<img src=x onerror=" in text and "<script>" in text and "<a href=" in text
    assert "[bad](javascript:window.__pwned='link')" in text
    assert answer.locator("strong").inner_text() == "bold"
    links = answer.locator("a")
    assert links.count() == 1
    assert links.first.get_attribute("href") == "https://example.com/a?b=1&c=2"
    assert "noopener" in links.first.get_attribute("rel")
    assert turn.locator(".q .bubble").inner_text().startswith("<img src=x onerror=")
    assert page.evaluate("[...document.querySelectorAll('#thread [href]')].every(e => /^https?:/.test(e.getAttribute('href')))")


def test_markdown_renderer_and_sse_parser_in_the_browser(app_server, phone):
    page = phone.page
    page.goto(f"{app_server.url}/")  # no token: no dev login is needed to load modules
    result = page.evaluate("""async () => {
      const { renderMarkdown } = await import('/markdown.js');
      const { SSEParser } = await import('/sse.js');
      const md = {
        img: renderMarkdown('<img src=x onerror=alert(1)>'),
        js: renderMarkdown('[x](javascript:alert(1)) [y](JaVaScRiPt:alert(1)) [z](data:text/html,hi) [w](/relative)'),
        quote: renderMarkdown('[q](https://a.com"onmouseover="alert(1))'),
        rich: renderMarkdown('# T\\n\\n**b** *i* `<c>`\\n\\n- a\\n- b\\n\\n1. x\\n2. y\\n\\n```py\\nx < 1\\n```\\nline1\\nline2'),
        unclosed: renderMarkdown('```\\nstill <b>streaming'),
      };
      const enc = new TextEncoder();
      const parser = new SSEParser();
      const bytes = enc.encode(': stream open\\r\\nevent: meta\\rdata: {"a":1}\\r\\n\\r\\nid: 3\\ndata: 你好\\ndata: 世界\\n\\ndata: tail\\r\\n\\r\\n');
      const events = [];
      // feed one byte at a time: CRLF and multi-byte characters straddle every boundary
      for (const b of bytes) events.push(...parser.feed(Uint8Array.of(b)));
      return { md, events };
    }""")
    md = result["md"]
    assert md["img"] == "<p>&lt;img src=x onerror=alert(1)&gt;</p>"
    assert "<a" not in md["js"] and "javascript:alert(1)" in md["js"]
    assert md["quote"].count("<a ") == 1 and 'href="https://a.com&quot;onmouseover=&quot;alert(1)"' in md["quote"]
    rich = md["rich"]
    for piece in ("<h3>T</h3>", "<strong>b</strong>", "<em>i</em>", "<code>&lt;c&gt;</code>", "<ul><li>a</li><li>b</li></ul>",
                  "<ol><li>x</li><li>y</li></ol>", '<pre><code class="lang-py" data-lang="py">x &lt; 1</code></pre>',
                  "<p>line1<br>line2</p>"):
        assert piece in rich, (piece, rich)
    assert md["unclosed"] == "<pre><code>still &lt;b&gt;streaming</code></pre>"
    assert result["events"] == [
        {"type": "comment", "text": "stream open"},
        {"type": "event", "event": "meta", "data": '{"a":1}', "id": ""},
        {"type": "event", "event": "message", "data": "你好\n世界", "id": "3"},
        {"type": "event", "event": "message", "data": "tail", "id": "3"},
    ]


# --------------------------------------------------------------------------- mini-program


FAKE_JSSDK = """
window.__wxjs_environment = 'miniprogram';
window.__posted = [];
window.__back = 0;
window.wx = { miniProgram: {
  postMessage: (message) => window.__posted.push(message),
  navigateBack: () => { window.__back += 1; },
} };
"""


def test_mini_program_bridge_posts_the_answer_and_navigates_back(app_server, user, browser):
    phone = Page(browser, init_script=FAKE_JSSDK)
    try:
        token = login(app_server.url, user)
        page = phone.page
        phone.open(app_server.url, token)
        assert page.is_visible("#back")
        phone.ask("你好 [mock tokens=5]")
        page.wait_for_selector("#thread .turn[data-status=complete]")
        turn = phone.last_turn()
        page.wait_for_function("window.__posted.length === 1")
        [posted] = page.evaluate("window.__posted")
        assert posted["data"]["messageId"] == turn.get_attribute("data-message-id")
        conversation = _messages(app_server.url, token, posted["data"]["conversationId"])
        assert conversation[0]["messageId"] == posted["data"]["messageId"]
        assert conversation[0]["terminal"] == "wx-webview"
        page.click("#back")
        assert page.evaluate("window.__back") == 1
    finally:
        phone.close()
    assert not phone.errors, phone.errors


def test_without_the_jssdk_the_page_works_and_the_bridge_is_a_no_op(app_server, user, browser):
    phone = Page(browser, init_script="window.__wxjs_environment = 'miniprogram';")
    try:
        token = login(app_server.url, user)
        page = phone.page
        # The vendored jweixin.js is absent: its 404 is expected, nothing else may fail.
        phone.open(app_server.url, token)
        phone.ask("你好 [mock tokens=3]")
        page.wait_for_selector("#thread .turn[data-status=complete]")
        page.click("#back")  # no wx: falls back to history.back(), no exception
    finally:
        phone.close()
    unexpected = [e for e in phone.errors if "404" not in e and "jweixin" not in e]
    assert not unexpected, phone.errors


def test_an_answer_blocked_by_the_content_check_is_cut_on_screen_and_in_history(start_app, user, phone):
    server = start_app(content_safety="keywords", content_safety_keywords=["forbidden-word"],
                       answer_safety_piece_chars=50)
    token = login(server.url, user)
    page = phone.page
    phone.open(server.url, token)
    # The risky word is percent-encoded in the directive, so only the answer carries it.
    phone.ask("安全检查 [mock tokens=40 say=forbidden%2Dword say_at=35]")
    page.wait_for_selector("#thread .turn[data-status=blocked]")
    turn = phone.last_turn()
    shown = turn.locator(".answer").inner_text()
    full = answer_text(40, "forbidden-word", 35)
    assert "forbidden-word" not in shown and shown.startswith("Sure! Here is a streamed answer.")
    assert "未通过内容安全检查" in turn.locator(".error").inner_text()
    conversation_id = page.evaluate(
        "localStorage.getItem(Object.keys(localStorage).find(k => k.startsWith('chatrelay.conversation.')))")
    [stored] = _messages(server.url, token, conversation_id)
    assert stored["status"] == "blocked" and stored["answer"] and full.startswith(stored["answer"])
    assert "forbidden-word" not in stored["answer"] and shown.strip() == stored["answer"].strip()
    # Reloaded from history, the turn shows the same cut answer and the reason.
    page.reload()
    phone.wait_ready()
    page.wait_for_selector("#thread .turn[data-status=blocked]")
    assert "forbidden-word" not in phone.last_turn().locator(".answer").inner_text()
    assert "未通过内容安全检查" in phone.last_turn().locator(".error").inner_text()
