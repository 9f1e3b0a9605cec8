'use strict';
// The sample page (example/), run in a vm with fake App / Page / getApp / wx: it streams a
// recorded answer with throttled setData, stops, rates, lists conversations; and every
// handler its WXML binds exists.
const { afterEach, test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const vm = require('node:vm');
const { createClock, createFakeWx, loadFixture, replyFrom } = require('./helpers.js');

const EXAMPLE = path.join(__dirname, '..', 'example');
const KIT = path.join(__dirname, '..', 'chatrelay.js');
const BASE = 'https://chat.example.com';

/** Apply a setData patch with mini-program path keys ("turns[2].answer"). */
function applyPatch(data, patch) {
  for (const [key, value] of Object.entries(patch)) {
    const parts = key.match(/[^.[\]]+/g);
    let target = data;
    for (const part of parts.slice(0, -1)) {
      if (target[part] === undefined) target[part] = {};
      target = target[part];
    }
    target[parts[parts.length - 1]] = value;
  }
}

function load(file, globals) {
  const source = fs.readFileSync(path.join(EXAMPLE, file), 'utf8');
  const requireKit = (name) => {
    assert.match(name, /utils\/chatrelay\.js$/);
    return require(KIT);
  };
  vm.runInNewContext(source, { ...globals, require: requireKit, console }, { filename: file });
}

/** The app and page of the example, on a fake wx; returns the page instance and its observers. */
async function startPage(route) {
  const clock = createClock();
  const wx = createFakeWx(route);
  wx.showToast = (o) => toasts.push(o.title);
  const toasts = [];
  globalThis.wx = wx; // as in a mini-program, where every module sees the global wx
  let appDef = null;
  let pageDef = null;
  const globals = {
    wx, setTimeout: clock.setTimeout, clearTimeout: clock.clearTimeout,
    Date: { now: () => clock.now }, // throttling follows the fake clock
    App: (def) => { appDef = def; }, Page: (def) => { pageDef = def; }, getApp: () => appDef,
  };
  load('app.js', globals);
  load('pages/chat/chat.js', globals);
  const setDataCalls = [];
  const page = Object.assign(Object.create(pageDef), {
    data: JSON.parse(JSON.stringify(pageDef.data)),
    setData(patch) { setDataCalls.push(patch); applyPatch(this.data, patch); },
  });
  page.onLoad();
  await page.ready;
  await wx.idle();
  return { page, wx, clock, setDataCalls, toasts, appDef, pageDef };
}

function router(fixture, extra = {}) {
  return (request) => {
    const url = request.url.slice(BASE.length);
    if (url === '/v1/auth/dev') return json(200, { token: 'dev-token', tokenType: 'Bearer', expiresIn: 3600 });
    if (url.startsWith('/v1/conversations?')) {
      return json(200, { items: [{ conversationId: 'c1', title: '你好', turnCount: 1 }], nextCursor: null });
    }
    if (url === '/v1/chat/stream') return extra.stream ? extra.stream(request) : replyFrom(fixture);
    if (extra.resume && /^\/v1\/messages\/[^/]+\/stream/.test(url)) return extra.resume(request);
    if (/\/feedback$/.test(url)) return json(200, { messageId: 'm', useful: request.data.useful });
    if (/\/stop$/.test(url)) return json(202, { status: 'stopped', stopRequested: true });
    if (/\/messages(\?|$)/.test(url)) {
      return json(200, { items: [{ messageId: 'old', question: 'q0', answer: 'a0', status: 'complete', useful: 1 }] });
    }
    throw new Error(`unexpected ${request.method} ${url}`);
  };
}

afterEach(() => { delete globalThis.wx; });

const json = (status, body) => ({ status, headers: {}, body: JSON.stringify(body), end: 'success', bodyAs: 'object' });

test('the page streams an answer with throttled setData, then rates it', async () => {
  const fixture = loadFixture('answer');
  const { page, wx, setDataCalls } = await startPage(router(fixture));
  assert.equal(wx.calls[0].url, `${BASE}/v1/auth/dev`, 'the demo fetches a dev token first');
  assert.equal(page.data.conversations.length, 1);

  page.onInput({ detail: { value: '你好 😀' } });
  page.send();
  assert.equal(page.data.streaming, true);
  await wx.idle();

  const post = wx.calls.find((c) => c.url.endsWith('/v1/chat/stream'));
  assert.equal(post.header.Authorization, 'Bearer dev-token');
  assert.deepEqual(post.data, { prompt: '你好 😀', requestId: post.data.requestId }); // the kit adds a requestId
  assert.match(post.data.requestId, /^[0-9A-Za-z_-]{1,64}$/);
  const [turn] = page.data.turns;
  assert.equal(turn.answer, fixture.expectedText);
  assert.equal(turn.status, 'complete');
  assert.equal(turn.messageId, fixture.headers['x-message-id']);
  assert.equal(page.data.streaming, false);
  const answerRenders = setDataCalls.filter((p) => 'turns[0].answer' in p).length;
  assert.ok(answerRenders <= 3, `setData is throttled (${answerRenders} renders for 40 deltas)`);

  page.rate({ currentTarget: { dataset: { index: 0, value: 1 } } });
  await wx.idle();
  const feedback = wx.calls.find((c) => c.url.endsWith('/feedback'));
  assert.equal(feedback.method, 'PUT');
  assert.deepEqual(feedback.data, { useful: 1 });
  assert.equal(page.data.turns[0].useful, 1);
});

test('the stop button stops the answer and tells the server', async () => {
  const fixture = loadFixture('answer');
  const silent = () => ({ ...replyFrom(fixture), pieces: replyFrom(fixture).pieces.slice(0, 6), end: 'silent' });
  const { page, wx, clock, setDataCalls } = await startPage(router(fixture, { stream: silent }));
  page.onInput({ detail: { value: 'q' } });
  page.send();
  await wx.idle();
  clock.tick(50); // the throttled render of the last delta
  const shown = page.data.turns[0].answer;
  assert.ok(shown.length > 0);
  assert.ok(setDataCalls.some((p) => 'turns[0].answer' in p));
  page.stop();
  await wx.idle();
  assert.ok(wx.calls.some((c) => c.url === `${BASE}/v1/messages/${fixture.headers['x-message-id']}/stop`));
  assert.equal(page.data.turns[0].status, 'stopped');
  assert.equal(page.data.turns[0].answer, shown);
  assert.equal(page.data.streaming, false);
});

test('an error is shown and the partial answer kept', async () => {
  const fixture = loadFixture('upstream_cut');
  const { page, wx, toasts } = await startPage(router(fixture));
  page.onInput({ detail: { value: 'q' } });
  page.send();
  await wx.idle();
  assert.equal(page.data.turns[0].status, 'failed');
  assert.equal(page.data.turns[0].answer, fixture.expectedText);
  assert.equal(toasts.length, 1);
});

test('the conversation list opens a conversation', async () => {
  const { page, wx } = await startPage(router(loadFixture('answer')));
  page.toggleList();
  assert.equal(page.data.showList, true);
  page.openConversation({ currentTarget: { dataset: { id: 'c1' } } });
  await wx.idle();
  assert.ok(wx.calls.some((c) => c.url === `${BASE}/v1/conversations/c1/messages?limit=50`));
  assert.deepEqual(page.data.turns.map((t) => [t.answer, t.useful]), [['a0', 1]]);
  assert.equal(page.data.showList, false);
});

test('every handler bound in the WXML exists, and answers carry the AI label', async () => {
  const { pageDef } = await startPage(router(loadFixture('answer')));
  const wxml = fs.readFileSync(path.join(EXAMPLE, 'pages/chat/chat.wxml'), 'utf8');
  const handlers = [...wxml.matchAll(/\b(?:bind|catch)\w+="(\w+)"/g)].map((m) => m[1]);
  assert.ok(handlers.length >= 8);
  for (const name of handlers) assert.equal(typeof pageDef[name], 'function', `handler ${name}`);
  assert.match(wxml, /AI 生成/);
  for (const file of ['app.json', 'sitemap.json', 'pages/chat/chat.json']) {
    JSON.parse(fs.readFileSync(path.join(EXAMPLE, file), 'utf8'));
  }
  const app = JSON.parse(fs.readFileSync(path.join(EXAMPLE, 'app.json'), 'utf8'));
  for (const page of app.pages) assert.ok(fs.existsSync(path.join(EXAMPLE, `${page}.js`)));
});

test('a cut answer is shown as cut, with retry for an answer that failed', async () => {
  const fixture = loadFixture('upstream_cut');
  const { page, wx } = await startPage(router(fixture));
  page.onInput({ detail: { value: 'q' } });
  page.send();
  await wx.idle();
  const [turn] = page.data.turns;
  assert.equal(turn.cut, true, 'not shown as a finished answer');
  assert.equal(turn.action, 'retry');
  assert.equal(turn.answer, fixture.expectedText);
  // 重试 asks again as a new turn: a new requestId.
  const first = wx.calls.filter((c) => c.url.endsWith('/v1/chat/stream'))[0];
  page.retryTurn({ currentTarget: { dataset: { index: 0 } } });
  await wx.idle();
  const posts = wx.calls.filter((c) => c.url.endsWith('/v1/chat/stream'));
  assert.equal(posts.length, 2);
  assert.notEqual(posts[1].data.requestId, first.data.requestId);
  assert.deepEqual(page.data.turns.map((t) => t.question), ['q'], 'the same turn, asked again');
});

test('a connection lost for good is shown as cut and resumes the same turn (same requestId)', async () => {
  const cut = loadFixture('drop_and_resume');
  const whole = loadFixture('answer');
  let posts = 0;
  const dead = { status: 200, headers: {}, pieces: [], end: 'fail', errMsg: 'request:fail network lost' };
  const { page, wx, clock } = await startPage(router(whole, {
    stream: () => (posts++ === 0 ? replyFrom(cut, { end: 'fail' }) : replyFrom(whole)),
    resume: () => dead, // every resume fails as well: the kit gives up with network_error
  }));
  page.onInput({ detail: { value: 'q' } });
  page.send();
  await wx.idle();
  clock.tick(100);
  await wx.idle();
  const turn = page.data.turns[0];
  assert.equal(turn.cut, true);
  assert.equal(turn.action, 'resume');
  assert.ok(whole.expectedText.startsWith(turn.answer.slice(0, 5)));
  page.resumeTurn({ currentTarget: { dataset: { index: 0 } } });
  await wx.idle();
  const streamPosts = wx.calls.filter((c) => c.url.endsWith('/v1/chat/stream'));
  assert.equal(streamPosts.length, 2);
  assert.equal(streamPosts[1].data.requestId, streamPosts[0].data.requestId, 'the same turn is asked for again');
  assert.equal(page.data.turns[0].answer, whole.expectedText);
  assert.equal(page.data.turns[0].status, 'complete');
  assert.equal(page.data.turns[0].cut, false);
});

test('an answer that ended on a length cap is cut, not complete', async () => {
  const fixture = loadFixture('answer');
  const body = Buffer.concat(fixture.chunks.map((c) => Buffer.from(c, 'base64'))).toString('utf8')
    .replace('"finishReason":"stop"', '"finishReason":"length_cap"');
  const { page, wx } = await startPage(router(fixture, {
    stream: () => ({ status: 200, headers: fixture.headers, pieces: [new Uint8Array(Buffer.from(body)).buffer], end: 'success' }),
  }));
  page.onInput({ detail: { value: 'q' } });
  page.send();
  await wx.idle();
  assert.equal(page.data.turns[0].status, 'cut');
  assert.equal(page.data.turns[0].cut, true);
  assert.equal(page.data.turns[0].action, 'retry');
});
