'use strict';
// The kit against a running chatrelay server, over real sockets, through a wx.request shim on
// node:http(s) that behaves like a hostile network: reads re-split at random (inside UTF-8
// characters too) or merged, buffers reused after the callback, a silent drop (no callback at
// all, as on iOS). Skipped unless CHATRELAY_LIVE_URL is set:
//
//   CHATRELAY_LIVE_URL=http://127.0.0.1:8000 [CHATRELAY_LIVE_TOKEN=...] node --test clients/miniprogram/test/live/
//
// Without a token it asks POST /v1/auth/dev for one (a dev server, CHATRELAY_DEV_AUTH=1). The
// answers come from the fake LLM's [mock ...] directive (devtools/chatrelay_dev/mockllm).
const { test } = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const https = require('node:https');
const path = require('node:path');
const { mulberry32 } = require('../helpers.js');

const URL_BASE = (process.env.CHATRELAY_LIVE_URL || '').replace(/\/+$/, '');
const SKIP = URL_BASE ? false : 'CHATRELAY_LIVE_URL is not set';
const kit = () => require(path.join(__dirname, '..', '..', 'chatrelay.js'));

/**
 * A wx.request on node:http(s). plan(options, index) -> {} | { holdHeadMs } | { dropBeforeHead: true }
 * | { silentAfterBytes }; index counts every request made through the shim.
 */
function createShim({ seed = 1, maxSize = 9, plan = () => ({}) } = {}) {
  const random = mulberry32(seed);
  const calls = [];
  const open = new Set();

  function request(options) {
    const index = calls.length;
    calls.push(options);
    const how = plan(options, index) || {};
    const target = new URL(options.url);
    const lib = target.protocol === 'https:' ? https : http;
    const payload = options.data === undefined ? undefined
      : Buffer.from(typeof options.data === 'string' ? options.data : JSON.stringify(options.data));
    const headers = { ...(options.header || {}) };
    if (payload) headers['Content-Length'] = String(payload.length);
    const task = { aborted: false, silent: false, headerFns: [], chunkFns: [] };
    let settled = false;
    const settle = (ok, res) => {
      if (settled || task.silent) return;
      settled = true;
      if (ok && options.success) options.success(res);
      if (!ok && options.fail) options.fail(res);
      if (options.complete) options.complete(res);
    };
    const req = lib.request(target, { method: options.method || 'GET', headers }, (res) => {
      open.add(res.socket);
      if (how.dropBeforeHead) { task.silent = true; res.on('data', () => {}); return; } // iOS: nothing, ever
      const queue = [];
      const whole = [];
      let ended = false;
      let delivered = 0;
      let pumping = false;
      const chunked = options.enableChunked && res.statusCode === 200;
      const pump = () => {
        if (task.aborted || task.silent) return;
        if (!queue.length) {
          pumping = false;
          if (ended) {
            const data = chunked ? new ArrayBuffer(0) : new Uint8Array(Buffer.concat(whole)).buffer;
            settle(true, { statusCode: res.statusCode, header: res.headers, data, errMsg: 'request:ok' });
          }
          return;
        }
        pumping = true;
        // Re-split: a random piece, sometimes several reads merged.
        const all = Buffer.concat(queue.splice(0));
        const size = random() < 0.2 ? all.length : Math.min(all.length, 1 + Math.floor(random() * maxSize));
        const piece = all.subarray(0, size);
        if (size < all.length) queue.push(all.subarray(size));
        if (how.silentAfterBytes != null && delivered + piece.length > how.silentAfterBytes) { task.silent = true; return; }
        delivered += piece.length;
        const buffer = new Uint8Array(piece.length);
        buffer.set(piece);
        task.chunkFns.forEach((fn) => fn({ data: buffer.buffer }));
        buffer.fill(0x21); // the runtime reuses its buffer
        setImmediate(pump);
      };
      const start = () => {
        if (task.aborted) return;
        task.headerFns.forEach((fn) => fn({ statusCode: res.statusCode, header: res.headers }));
        res.on('data', (buf) => {
          if (chunked) { queue.push(Buffer.from(buf)); if (!pumping) pump(); } else whole.push(Buffer.from(buf));
        });
        res.on('end', () => { ended = true; if (!pumping) pump(); });
      };
      res.pause();
      setTimeout(() => { res.resume(); start(); }, how.holdHeadMs || 0);
    });
    req.on('error', (error) => { if (!task.aborted) settle(false, { errMsg: `request:fail ${error.message}` }); });
    if (payload) req.write(payload);
    req.end();
    task.onHeadersReceived = (fn) => task.headerFns.push(fn);
    task.onChunkReceived = (fn) => task.chunkFns.push(fn);
    task.abort = () => {
      if (task.aborted) return;
      task.aborted = true;
      req.destroy();
      setImmediate(() => settle(false, { errMsg: 'request:fail abort' }));
    };
    return task;
  }
  return { wx: { request }, calls, close() { for (const s of open) s.destroy(); } };
}

let tokenPromise = null;
function token() {
  if (process.env.CHATRELAY_LIVE_TOKEN) return Promise.resolve(process.env.CHATRELAY_LIVE_TOKEN);
  if (!tokenPromise) {
    tokenPromise = kit().devLogin({ url: URL_BASE, wx: createShim().wx }, `live-kit-${Date.now().toString(36)}`)
      .then((answer) => answer.token);
  }
  return tokenPromise;
}

function chat(shim, options) {
  return new Promise((resolve) => {
    const seen = { deltas: [], meta: [] };
    const handle = kit().streamChat({
      url: URL_BASE, wx: shim.wx, idleTimeoutMs: 8000, connectTimeoutMs: 2000, ...options,
      onMeta: (m) => seen.meta.push(m),
      onDelta: (delta) => seen.deltas.push(delta),
      onDone: (done) => resolve({ handle, seen, done }),
      onError: (error) => resolve({ handle, seen, error }),
    });
    if (options.started) options.started(handle);
  });
}

/** GET /v1/requests/{id} until the turn has ended (the server checkpoints at most once a second). */
async function storedTurn(requestId, tkn, { seconds = 30 } = {}) {
  const shim = createShim();
  try {
    for (let i = 0; i < seconds * 4; i++) {
      const turn = await kit().getRequest({ url: URL_BASE, token: tkn, wx: shim.wx }, requestId).catch((e) => e);
      if (turn && turn.status && turn.status !== 'streaming') return turn;
      await new Promise((r) => setTimeout(r, 250));
    }
    throw new Error(`turn ${requestId} did not end in ${seconds} s`);
  } finally {
    shim.close();
  }
}

// CR, CRLF and an emoji injected as chunk 3 by the fake LLM (`say` is percent-decoded).
const MIXED = 'live [mock tokens=24 interval=0.01 say=a%0D%0Ab%0Dc%F0%9F%98%80 say_at=3]';

test('stop before the response head: the turn ends stopped on the server', { skip: SKIP }, async () => {
  const tkn = await token();
  const shim = createShim({ plan: (options, index) => (index === 0 ? { holdHeadMs: 3000 } : {}) });
  let handle = null;
  const pending = chat(shim, { token: tkn, prompt: 'live stop [mock tokens=200 interval=0.05]', started: (h) => { handle = h; } });
  await new Promise((r) => setTimeout(r, 300));
  const reply = await handle.stop();
  const { done } = await pending;
  assert.equal(done.finishReason, 'stopped');
  assert.ok(shim.calls.some((c) => c.url === `${URL_BASE}/v1/requests/${handle.requestId}/stop`), 'stopped by request id');
  assert.equal(reply && reply.stopRequested, true);
  const turn = await storedTurn(handle.requestId, tkn);
  assert.equal(turn.status, 'stopped');
  shim.close();
});

test('a silent drop before the response head: the same requestId is posted again, the full stored answer', { skip: SKIP }, async () => {
  const tkn = await token();
  const shim = createShim({ seed: 2, plan: (options, index) => (index === 0 ? { dropBeforeHead: true } : {}) });
  const { handle, done, error } = await chat(shim, { token: tkn, prompt: MIXED });
  assert.equal(error, undefined, error && `${error.code}: ${error.message}`);
  const posts = shim.calls.filter((c) => c.method === 'POST' && c.url.includes('/v1/chat/stream'));
  assert.equal(posts.length, 2);
  assert.equal(posts[1].data.requestId, posts[0].data.requestId);
  const turn = await storedTurn(handle.requestId, tkn);
  assert.equal(done.text, turn.answer);
  shim.close();
});

for (const format of ['json', 'text']) {
  test(`CR, CRLF and emoji reach the page as stored (format=${format}, re-split reads, a silent drop mid-answer)`, { skip: SKIP }, async () => {
    const tkn = await token();
    const shim = createShim({ seed: format === 'json' ? 3 : 4, maxSize: 5,
      plan: (options, index) => (index === 0 ? { silentAfterBytes: 400 } : {}) });
    const { handle, done, error, seen } = await chat(shim, { token: tkn, prompt: MIXED, format });
    assert.equal(error, undefined, error && `${error.code}: ${error.message}`);
    const turn = await storedTurn(handle.requestId, tkn);
    assert.equal(done.text, turn.answer, 'byte-exact, CR and CRLF included');
    assert.equal(seen.deltas.join(''), turn.answer, 'nothing delivered twice');
    assert.ok(turn.answer.includes('a\r\nb\rc😀'), 'the answer does contain CR, CRLF and an emoji');
    shim.close();
  });
}

module.exports = { createShim };
