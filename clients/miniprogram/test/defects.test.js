'use strict';
// The defects found by driving the kit through an adversarial wx.request: each test here failed
// on the kit before the fix (commit b223983) and passes after it.
const { describe, test } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { createClock, mulberry32, randomSplit, loadFixture, recordedPieces, withoutTextDecoder } = require('./helpers.js');

const KIT = path.join(__dirname, '..', 'chatrelay.js');
const BASE = 'https://api.example.com';
const bytesOf = (s) => new Uint8Array(Buffer.from(s, 'utf8'));

function kit() {
  for (const name of Object.keys(require.cache)) if (name.startsWith(path.join(__dirname, '..') + path.sep) && !name.includes(`${path.sep}test${path.sep}`)) delete require.cache[name];
  return require(KIT);
}

/**
 * A scripted wx: request(options) -> task; `script(options, index)` returns the steps of that
 * request: ['head', status, headers] | ['chunk', bytes] | ['success', status, data] | ['fail', msg]
 * | ['silent']. `headers: false` in the options makes a task without onHeadersReceived.
 * Steps run one per setImmediate; chunks are handed over in a buffer that is overwritten after
 * the callback (the runtime reuses it).
 */
function scriptedWx(script, { withHeaders = true } = {}) {
  const calls = [];
  let busy = 0;
  let waiters = [];
  const later = (fn) => {
    busy += 1;
    setImmediate(() => {
      try { fn(); } finally { busy -= 1; if (!busy) waiters.splice(0).forEach((r) => r()); }
    });
  };
  function request(options) {
    const index = calls.length;
    calls.push(options);
    const task = { aborted: false, chunk: [], head: [] };
    task.onChunkReceived = (fn) => task.chunk.push(fn);
    if (withHeaders) task.onHeadersReceived = (fn) => task.head.push(fn);
    task.abort = () => {
      if (task.aborted) return;
      task.aborted = true;
      later(() => { if (options.fail) options.fail({ errMsg: 'request:fail abort' }); });
    };
    const steps = script(options, index) || [['silent']];
    let at = 0;
    const next = () => {
      if (task.aborted || at >= steps.length) return;
      const [kind, a, b] = steps[at++];
      if (kind === 'head') task.head.forEach((fn) => fn({ statusCode: a, header: b || {} }));
      if (kind === 'chunk') {
        const reused = new Uint8Array(a.length);
        reused.set(a);
        task.chunk.forEach((fn) => fn({ data: reused.buffer }));
        reused.fill(0x78); // the runtime reuses the buffer
      }
      if (kind === 'success') { options.success({ statusCode: a, data: b === undefined ? new ArrayBuffer(0) : b, header: {} }); return; }
      if (kind === 'fail') { options.fail({ errMsg: a }); return; }
      if (kind === 'silent') return;
      later(next);
    };
    later(next);
    return task;
  }
  return { calls, request, idle: () => (busy ? new Promise((r) => waiters.push(r)) : Promise.resolve()) };
}

function start(wx, chat = {}) {
  const clock = createClock();
  const seen = { meta: [], deltas: [], done: [], errors: [], terminal: [] };
  const handle = kit().streamChat({
    url: BASE, token: 'tkn', prompt: 'q', wx, setTimeout: clock.setTimeout, clearTimeout: clock.clearTimeout,
    onMeta: (m) => seen.meta.push(m),
    onDelta: (delta, text, offset) => seen.deltas.push({ delta, text, offset }),
    onDone: (d) => { seen.done.push(d); seen.terminal.push('done'); },
    onError: (e) => { seen.errors.push(e); seen.terminal.push('error'); },
    ...chat,
  });
  return { handle, clock, seen };
}

/** Tick the fake clock in steps (with the fake wx's deliveries in between) until `ms` passed or an ending. */
async function advance(wx, clock, seen, ms, step = 500) {
  await wx.idle();
  for (let t = 0; t < ms && !seen.terminal.length; t += step) {
    clock.tick(step);
    await wx.idle();
  }
}

const chunksOf = (s, seed, maxSize = 7) => randomSplit(bytesOf(s), mulberry32(seed), maxSize).map((b) => new Uint8Array(b));
const replay = (fixture, seed) => recordedPieces(fixture, { seed, maxSize: 9 }).map((b) => ['chunk', new Uint8Array(b)]);

describe('1. stop() before the message id is known', () => {
  test('tells the server by request id (POST /v1/requests/{requestId}/stop)', async () => {
    const wx = scriptedWx((options) => (options.enableChunked ? [['silent']]
      : [['success', 202, { messageId: null, status: 'stopped', stopRequested: true }]]));
    const { handle, seen } = start(wx);
    await wx.idle();
    const reply = await handle.stop();
    await wx.idle();
    const post = wx.calls[0];
    assert.match(post.data.requestId, /^[0-9A-Za-z_-]{1,64}$/, 'the kit always sends a requestId');
    assert.equal(wx.calls.length, 2, 'the stop call is made although no message id is known');
    assert.equal(wx.calls[1].url, `${BASE}/v1/requests/${post.data.requestId}/stop`);
    assert.equal(wx.calls[1].method, 'POST');
    assert.equal(wx.calls[1].header.Authorization, 'Bearer tkn');
    assert.deepEqual(reply, { messageId: null, status: 'stopped', stopRequested: true });
    assert.deepEqual(seen.done.map((d) => d.finishReason), ['stopped']);
  });

  test("a caller's requestId names the turn", async () => {
    const wx = scriptedWx((options) => (options.enableChunked ? [['silent']] : [['success', 202, {}]]));
    const { handle } = start(wx, { requestId: 'r-42' });
    await handle.stop();
    assert.equal(wx.calls[1].url, `${BASE}/v1/requests/r-42/stop`);
  });
});

describe('2. a drop before the response head is resumed by posting the same requestId', () => {
  const fixture = loadFixture('answer');
  for (const how of ['silent', 'fail']) {
    test(`the first POST is lost (${how}): the replayed turn is delivered in full, once`, () => withoutTextDecoder(async () => {
      const wx = scriptedWx((options, index) => {
        if (index === 0) return how === 'silent' ? [['silent']] : [['fail', 'request:fail network lost']];
        return [['head', 200, fixture.headers], ...replay(fixture, index), ['success', 200]];
      });
      const { clock, seen } = start(wx);
      await advance(wx, clock, seen, 40000);
      assert.deepEqual(seen.errors.map((e) => e.code), []);
      assert.deepEqual(seen.terminal, ['done']);
      assert.equal(seen.done[0].text, fixture.expectedText);
      assert.equal(seen.deltas.map((d) => d.delta).join(''), fixture.expectedText);
      assert.deepEqual(wx.calls.map((c) => c.method), ['POST', 'POST']);
      assert.equal(wx.calls[1].data.requestId, wx.calls[0].data.requestId, 'the same requestId: the server replays');
      assert.equal(wx.calls[1].url, `${BASE}/v1/chat/stream`);
    }));
  }

  test('text already delivered is not delivered again after the replay (no message id known)', async () => {
    // format=text from a server without `: meta`, on a runtime without onHeadersReceived: the
    // connection drops mid-answer; posting the same requestId again replays from the start.
    const recorded = loadFixture('answer_text_format');
    // The recording's `: meta` comment removed: a server that does not send it.
    const body = Buffer.concat(recordedPieces(recorded).map((b) => Buffer.from(b))).toString('utf8')
      .replace(/^: meta [^\n]*\n\n/m, '');
    const bytes = Buffer.from(body, 'utf8');
    const all = [];
    for (let i = 0; i < bytes.length; i += 24) all.push(['chunk', new Uint8Array(bytes.subarray(i, i + 24))]);
    const wx = scriptedWx((options, index) => (index === 0
      ? [...all.slice(0, 12), ['fail', 'request:fail network lost']]
      : [...replay(recorded, 3), ['success', 200]]), { withHeaders: false });
    const { clock, seen } = start(wx, { format: 'text' });
    await advance(wx, clock, seen, 5000);
    assert.deepEqual(seen.terminal, ['done']);
    assert.equal(seen.done[0].text, recorded.expectedText);
    assert.equal(seen.deltas.map((d) => d.delta).join(''), recorded.expectedText, 'nothing twice');
    assert.deepEqual(wx.calls.map((c) => c.method), ['POST', 'POST']);
  });
});

describe('3. runtimes without onHeadersReceived', () => {
  test('a JSON error body delivered as chunks keeps the server code and field', () => withoutTextDecoder(async () => {
    const body = JSON.stringify({ code: 'invalid_request', message: '提示词无效 😀', field: 'prompt' });
    const wx = scriptedWx(() => [...chunksOf(body, 7, 5).map((c) => ['chunk', c]), ['success', 422]],
      { withHeaders: false });
    const { clock, seen } = start(wx);
    await advance(wx, clock, seen, 1000);
    assert.deepEqual(seen.errors.map((e) => [e.code, e.field, e.status, e.message]),
      [['invalid_request', 'prompt', 422, '提示词无效 😀']]);
    assert.deepEqual(seen.terminal, ['error']);
  }));

  test('format=text: the message id comes from the stream (`: meta`), so a drop is resumed', async () => {
    const meta = { conversationId: 'c-1', messageId: 'm-1', model: 'default' };
    const first = ': stream open\n\n: meta ' + JSON.stringify(meta) + '\n\nid: 3\ndata: 你好，\n\nid: 5\ndata: 世界\n\n';
    const rest = ': stream open\n\n: meta ' + JSON.stringify(meta) + '\n\nid: 8\ndata: 😀!\n\n' +
      ': done {"finishReason":"stop","usage":{"totalTokens":3}}\n\ndata: [DONE]\n\n';
    const wx = scriptedWx((options, index) => (index === 0
      ? [...chunksOf(first, 1).map((c) => ['chunk', c]), ['fail', 'request:fail network lost']]
      : [...chunksOf(rest, 2).map((c) => ['chunk', c]), ['success', 200]]), { withHeaders: false });
    const { clock, seen } = start(wx, { format: 'text' });
    await advance(wx, clock, seen, 1000);
    assert.deepEqual(seen.meta, [meta], 'onMeta from the `: meta` comment, before the answer');
    assert.deepEqual(seen.terminal, ['done']);
    assert.equal(seen.done[0].text, '你好，世界😀!');
    assert.equal(wx.calls[1].method, 'GET');
    assert.equal(wx.calls[1].url, `${BASE}/v1/messages/m-1/stream?after=5&format=text`);
  });
});

describe('4. format=text: CR and CRLF reach the callbacks exactly', () => {
  const deltas = ['a\r\nb\rc', '\r\n', 'x\r', '\ny', '\n\n', '尾\r\n\r\n😀', ' z'];
  let stream = ': stream open\n\n: meta {"conversationId":"c","messageId":"m","model":"default"}\n\n';
  let at = 0;
  for (const d of deltas) {
    at += Array.from(d).length;
    // Each data line ends with the very line break that followed it in the text; the last with LF.
    stream += `id: ${at}\n` + d.split(/(\r\n|\r|\n)/).reduce((out, part, i, all) => {
      if (i % 2 === 1) return out; // separators are handled with the line before them
      return out + 'data: ' + part + (i + 1 < all.length ? all[i + 1] : '\n');
    }, '') + '\n';
  }
  stream += ': done {"finishReason":"stop","usage":{"completionTokens":7}}\n\ndata: [DONE]\n\n';
  const expected = deltas.join('');

  for (const seed of [1, 2, 3, 4]) {
    test(`random re-splits, CRLF split across chunks too (seed ${seed})`, () => withoutTextDecoder(async () => {
      const wx = scriptedWx(() => [['head', 200, { 'X-Message-Id': 'm' }],
        ...chunksOf(stream, seed, 1 + seed * 2).map((c) => ['chunk', c]), ['success', 200]]);
      const { clock, seen } = start(wx, { format: 'text' });
      await advance(wx, clock, seen, 1000);
      assert.deepEqual(seen.deltas.map((d) => d.delta), deltas);
      assert.equal(seen.done[0].text, expected);
      assert.equal(seen.done[0].finishReason, 'stop', 'the `: done` comment ends the answer');
      assert.deepEqual(seen.done[0].usage, { completionTokens: 7 });
      assert.equal(seen.deltas[seen.deltas.length - 1].offset, Array.from(expected).length);
    }));
  }
});
