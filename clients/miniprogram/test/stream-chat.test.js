'use strict';
// streamChat against a fake `wx` that replays bytes recorded from the real server
// (tests/functional/test_record_miniprogram_fixtures.py writes test/fixtures/*.json), as
// recorded and re-split at seeded random places (wx merges and splits pieces freely).
const { describe, test } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const {
  createClock, createFakeWx, loadFixture, replyFrom, withoutTextDecoder,
} = require('./helpers.js');

const KIT = path.join(__dirname, '..', 'chatrelay.js');
const PARSER = path.join(__dirname, '..', 'sse-parser.js');
const BASE = 'https://api.example.com';

/** A fresh copy of the kit (and its parser), as a page would load it. */
function kit() {
  delete require.cache[require.resolve(KIT)];
  delete require.cache[require.resolve(PARSER)];
  return require(KIT);
}

const codePoints = (s) => Array.from(s).length;

/**
 * Run streamChat until the fake wx has nothing left to deliver; returns what each callback saw.
 * `replies` is a list (one reply per request) or a function (options, index) -> reply.
 */
async function run(replies, options = {}) {
  let streams = 0; // replies are for the streaming requests; anything else is a stop call
  const respond = typeof replies === 'function' ? replies
    : (request) => (request.enableChunked ? replies[streams++] || null : stopReply(request));
  const wx = options.wx || createFakeWx(respond);
  const clock = options.clock || createClock();
  const seen = { meta: [], deltas: [], reasoning: [], done: [], errors: [], headers: [], terminal: [] };
  const { streamChat } = kit();
  const handle = streamChat({
    url: `${BASE}/`, token: 'tkn', prompt: 'q', wx,
    setTimeout: clock.setTimeout, clearTimeout: clock.clearTimeout,
    onMeta: (m) => seen.meta.push(m),
    onDelta: (delta, text, offset) => seen.deltas.push({ delta, text, offset }),
    onReasoning: (delta, all) => seen.reasoning.push({ delta, all }),
    onDone: (d) => { seen.done.push(d); seen.terminal.push('done'); },
    onError: (e) => { seen.errors.push(e); seen.terminal.push('error'); },
    onHeaders: (h) => seen.headers.push(h),
    ...options.chat,
  });
  if (options.during) await options.during({ handle, wx, seen, clock });
  await wx.idle();
  return { seen, wx, handle, clock };
}

function stopReply(request) {
  const match = /\/messages\/([^/]+)\/stop$/.exec(request.url);
  const messageId = match ? decodeURIComponent(match[1]) : null;
  return { status: 202, headers: {}, body: JSON.stringify({ messageId, status: 'stopped', stopRequested: true }),
    end: 'success', bodyAs: 'object' };
}

/** Checks every answer recording has to pass, whatever its ending. */
function assertAnswerEvents(seen, fixture) {
  let text = '';
  for (const { delta, text: soFar, offset } of seen.deltas) {
    text += delta;
    assert.equal(soFar, text, 'onDelta gets the text so far');
    assert.equal(offset, codePoints(text), 'the offset is the answer length in code points');
  }
  assert.equal(text, fixture.expectedText, 'byte-exact answer');
  assert.equal(seen.terminal.length, 1, `exactly one terminal callback, saw ${seen.terminal}`);
}

const SPLITS = [
  ['as recorded', undefined],
  ['re-split 1-3 bytes (seed 1)', { seed: 1, maxSize: 3 }],
  ['re-split 1-8 bytes (seed 2)', { seed: 2, maxSize: 8 }],
  ['re-split 1-40 bytes (seed 3)', { seed: 3, maxSize: 40 }],
  ['re-split 1-400 bytes (seed 4)', { seed: 4, maxSize: 400 }],
  ['one byte at a time', { seed: 5, maxSize: 1 }],
];

const MODES = [
  ['with TextDecoder', (fn) => fn()],
  ['without TextDecoder', withoutTextDecoder],
];

for (const [mode, inMode] of MODES) {
  describe(`recorded server answers, ${mode}`, () => {
    for (const [how, split] of SPLITS) {
      test(`an answer with Chinese and emoji, ${how}`, () => inMode(async () => {
        const fixture = loadFixture('answer');
        const { seen, wx } = await run([replyFrom(fixture, { split })]);
        assertAnswerEvents(seen, fixture);
        assert.deepEqual(seen.errors, []);
        assert.equal(seen.done.length, 1);
        assert.equal(seen.done[0].text, fixture.expectedText);
        assert.equal(seen.done[0].finishReason, fixture.expect.finishReason);
        assert.equal(seen.done[0].usage.completionTokens, 40);
        assert.equal(seen.meta.length, 1);
        assert.equal(seen.meta[0].messageId, fixture.headers['x-message-id']);
        assert.equal(seen.meta[0].conversationId, fixture.headers['x-conversation-id']);
        assert.equal(seen.meta[0].model, 'default');
        assert.equal(seen.headers[0].statusCode, 200);
        // The request wx.request was given.
        const [post] = wx.calls;
        assert.equal(wx.calls.length, 1);
        assert.equal(post.url, `${BASE}/v1/chat/stream`);
        assert.equal(post.method, 'POST');
        assert.deepEqual(post.header, { Authorization: 'Bearer tkn', 'Content-Type': 'application/json' });
        // The kit always sends a requestId (generated here), so a retry is idempotent and a stop can
        // name the turn before its id is known; nothing else is added to the body.
        assert.deepEqual(post.data, { prompt: 'q', requestId: post.data.requestId });
        assert.match(post.data.requestId, /^mp-[0-9a-z]+-[0-9a-z]+$/);
        assert.equal(post.enableChunked, true);
        assert.equal(post.responseType, 'arraybuffer');
        assert.ok(post.timeout > 0);
        for (const fn of ['success', 'fail', 'complete']) assert.equal(typeof post[fn], 'function');
      }));

      test(`format=text: raw text events, meta from the stream's comment, ${how}`, () => inMode(async () => {
        const fixture = loadFixture('answer_text_format');
        const { seen, wx } = await run([replyFrom(fixture, { split })], { chat: { format: 'text' } });
        assertAnswerEvents(seen, fixture);
        assert.equal(seen.done[0].text, fixture.expectedText);
        assert.ok(seen.deltas.some((d) => d.delta === '\n'), 'a multi-line delta joined back with LF');
        // The server sends `: meta {...}` in text mode too (the same ids as the headers, and the model).
        const recorded = Buffer.concat(fixture.chunks.map((c) => Buffer.from(c, 'base64'))).toString('utf8');
        const meta = JSON.parse(/^: meta (.*)$/m.exec(recorded)[1]);
        assert.equal(meta.messageId, fixture.headers['x-message-id']);
        assert.deepEqual(seen.meta, [{ conversationId: fixture.headers['x-conversation-id'],
          messageId: fixture.headers['x-message-id'], model: meta.model }]);
        assert.equal(wx.calls[0].url, `${BASE}/v1/chat/stream?format=text`);
      }));

      test(`the upstream cut mid-answer: one onError with the partial text, ${how}`, () => inMode(async () => {
        const fixture = loadFixture('upstream_cut');
        const { seen } = await run([replyFrom(fixture, { split })]);
        assertAnswerEvents(seen, fixture);
        assert.deepEqual(seen.done, []);
        assert.equal(seen.errors.length, 1);
        const [error] = seen.errors;
        assert.equal(error.code, fixture.expect.code);
        assert.equal(error.finishReason, fixture.expect.finishReason);
        assert.equal(typeof error.message, 'string');
        assert.equal(error.text, fixture.expectedText);
      }));

      test(`an answer the content check refused: onError with the text cut at the offset, ${how}`, () => inMode(async () => {
        const fixture = loadFixture('answer_blocked');
        const { seen } = await run([replyFrom(fixture, { split })]);
        const streamed = seen.deltas.map((d) => d.delta).join('');
        assert.ok(streamed.length > fixture.expectedText.length, 'the stream ran past the cut');
        assert.ok(streamed.startsWith(fixture.expectedText));
        assert.deepEqual(seen.done, []);
        assert.deepEqual(seen.terminal, ['error']);
        const [error] = seen.errors;
        assert.equal(error.code, 'answer_blocked');
        assert.equal(error.offset, fixture.expect.offset);
        assert.equal(error.finishReason, 'blocked');
        assert.equal(error.text, fixture.expectedText, 'the text is cut where the server cut the stored answer');
        assert.equal(codePoints(error.text), fixture.expect.offset);
        assert.ok(!error.text.includes('forbidden-word'));
      }));

      test(`a reasoning model: reasoning apart from the answer, ${how}`, () => inMode(async () => {
        const fixture = loadFixture('reasoning');
        const { seen } = await run([replyFrom(fixture, { split })]);
        assertAnswerEvents(seen, fixture);
        assert.equal(seen.done[0].text, fixture.expectedText);
        assert.equal(seen.reasoning.map((r) => r.delta).join(''), fixture.expectedReasoning);
        assert.equal(seen.reasoning[seen.reasoning.length - 1].all, fixture.expectedReasoning);
        assert.equal(seen.meta[0].model, 'deepseek');
      }));

      test(`a drop mid-answer, resumed from the last id (maxResumes), ${how}`, () => inMode(async () => {
        const fixture = loadFixture('drop_and_resume');
        const replies = [replyFrom(fixture, { split, end: 'fail' }), replyFrom(fixture.resume, { split })];
        const { seen, wx } = await run(replies, { chat: { maxResumes: 2 } });
        assertAnswerEvents(seen, fixture);
        assert.deepEqual(seen.errors, []);
        assert.equal(seen.done[0].text, fixture.expectedText);
        assert.equal(seen.meta.length, 1, 'meta is reported once although both responses carry it');
        assert.deepEqual(wx.calls.map((c) => c.method), ['POST', 'GET']);
        assert.equal(wx.calls[1].url, `${BASE}${fixture.resume.path}?after=${fixture.resumeAfter}`);
        assert.equal(wx.calls[1].header.Authorization, 'Bearer tkn');
        assert.equal(wx.calls[1].data, undefined, 'the question is never posted again');
      }));
    }

    test('by default a drop is resumed (no option needed), the question never posted again', () => inMode(async () => {
      const fixture = loadFixture('drop_and_resume');
      const replies = [replyFrom(fixture, { end: 'fail' }), replyFrom(fixture.resume)];
      const { seen, wx } = await run(replies);
      assertAnswerEvents(seen, fixture);
      assert.deepEqual(seen.errors, []);
      assert.equal(seen.done[0].text, fixture.expectedText);
      assert.deepEqual(wx.calls.map((c) => c.method), ['POST', 'GET']);
      assert.equal(wx.calls[1].url, `${BASE}${fixture.resume.path}?after=${fixture.resumeAfter}`);
    }));

    test('by default resumes stop after 3 attempts: then onError with the text so far', () => inMode(async () => {
      const fixture = loadFixture('drop_and_resume');
      const dead = { status: 200, headers: {}, pieces: [], end: 'fail', errMsg: 'request:fail network lost' };
      const replies = [replyFrom(fixture, { end: 'fail' }), dead, dead, dead, dead];
      const { seen, wx } = await run(replies);
      assert.deepEqual(wx.calls.map((c) => c.method), ['POST', 'GET', 'GET', 'GET']);
      for (const call of wx.calls.slice(1)) {
        assert.equal(call.url, `${BASE}${fixture.resume.path}?after=${fixture.resumeAfter}`);
      }
      assert.deepEqual(seen.errors.map((e) => e.code), ['network_error']);
      assert.equal(codePoints(seen.errors[0].text), Number(fixture.resumeAfter));
      assert.deepEqual(seen.done, []);
    }));

    test('a drop with resume turned off (maxResumes 0): onError network_error with the partial text', () => inMode(async () => {
      const fixture = loadFixture('drop_and_resume');
      const { seen, wx } = await run([replyFrom(fixture, { end: 'fail' })], { chat: { maxResumes: 0 } });
      assert.equal(wx.calls.length, 1);
      assert.deepEqual(seen.errors.map((e) => e.code), ['network_error']);
      assert.equal(seen.errors[0].message, 'request:fail network lost');
      assert.equal(codePoints(seen.errors[0].text), Number(fixture.resumeAfter));
      assert.ok(fixture.expectedText.startsWith(seen.errors[0].text));
      assert.deepEqual(seen.done, []);
    }));

    for (const bodyAs of ['arraybuffer', 'string', 'object']) {
      test(`a 404 JSON error arrives in success (data as ${bodyAs}) and goes to onError`, () => inMode(async () => {
        const fixture = loadFixture('not_found');
        const { seen } = await run([replyFrom(fixture, { bodyAs })]);
        assert.deepEqual(seen.done, []);
        assert.equal(seen.errors.length, 1);
        const body = JSON.parse(fixture.body);
        assert.deepEqual(seen.errors[0], { code: body.code, message: body.message, field: body.field,
          status: fixture.expect.status, text: '' });
        assert.equal(seen.meta.length, 0);
      }));
    }
  });
}

describe('streamChat behaviour', () => {
  test('a 404 whose body comes as chunks after all (status seen in onHeadersReceived)', async () => {
    const fixture = loadFixture('not_found');
    const reply = { ...replyFrom(fixture), chunkBody: true };
    const { seen } = await run([reply]);
    assert.deepEqual(seen.errors.map((e) => [e.code, e.status]), [['not_found', 404]]);
    assert.deepEqual(seen.done, []);
  });

  test('an error body that is not JSON still gives a code and the status', async () => {
    const { seen } = await run([{ status: 502, headers: {}, body: '<html>Bad Gateway</html>', end: 'success' }]);
    assert.deepEqual(seen.errors.map((e) => [e.code, e.status]), [['http_502', 502]]);
  });

  test('stop() aborts the request, calls the stop endpoint with the message id, reports stopped', async () => {
    const fixture = loadFixture('answer');
    let handle = null;
    let stopped = null;
    const texts = [];
    const { seen, wx } = await run([replyFrom(fixture, { split: { seed: 9, maxSize: 16 } })], {
      chat: {
        onDelta(delta, text) {
          texts.push(text);
          if (texts.length === 3) stopped = { text, promise: handle.stop() };
        },
      },
      during: (ctx) => { handle = ctx.handle; },
    });
    const reply = await stopped.promise;
    await wx.idle();
    assert.equal(wx.tasks[0].aborted, true, 'the stream request is aborted');
    const messageId = fixture.headers['x-message-id'];
    const stopCalls = wx.calls.filter((c) => c.url.endsWith('/stop'));
    assert.equal(stopCalls.length, 1);
    assert.equal(stopCalls[0].url, `${BASE}/v1/messages/${messageId}/stop`);
    assert.equal(stopCalls[0].method, 'POST');
    assert.equal(stopCalls[0].header.Authorization, 'Bearer tkn');
    assert.deepEqual(reply, { messageId, status: 'stopped', stopRequested: true });
    assert.deepEqual(seen.terminal, ['done'], "one terminal callback; the abort's fail is ignored");
    assert.equal(seen.done[0].finishReason, 'stopped');
    assert.equal(seen.done[0].text, stopped.text);
    assert.equal(texts.length, 3, 'nothing is delivered after stop()');
    assert.equal(await handle.stop(), null, 'a second stop() is harmless');
    assert.equal(wx.calls.filter((c) => c.url.endsWith('/stop')).length, 1);
  });

  test('stop() before meta uses the X-Message-Id header; stopUrl overrides the URL', async () => {
    const fixture = loadFixture('answer');
    const id = fixture.headers['x-message-id'];
    const cases = [
      [undefined, `${BASE}/v1/messages/${id}/stop`],
      ['https://stop.example.com/fixed', 'https://stop.example.com/fixed'],
      [(messageId) => `https://stop.example.com/s/${messageId}`, `https://stop.example.com/s/${id}`],
    ];
    for (const [stopUrl, expected] of cases) {
      const headersOnly = { ...replyFrom(fixture), pieces: [], end: 'silent' };
      const { seen, wx } = await run([headersOnly], {
        chat: { stopUrl },
        during: async (ctx) => { await ctx.wx.idle(); await ctx.handle.stop(); },
      });
      assert.equal(seen.meta.length, 0);
      assert.equal(wx.calls[1].url, expected);
      assert.equal(wx.calls[1].method, 'POST');
      assert.deepEqual(seen.terminal, ['done']);
    }
  });

  // This test used to pin the defect "stop() before the message id is known
  // never tells the server" (it asserted no stop call and a null answer); the server can now stop
  // a turn by its request id, even before the turn exists.
  test('stop() before anything arrived aborts and stops the turn by its request id', async () => {
    const { seen, wx } = await run([null], {
      during: async ({ handle }) => {
        assert.deepEqual(await handle.stop(), { messageId: null, status: 'stopped', stopRequested: true });
      },
    });
    assert.equal(wx.tasks[0].aborted, true);
    assert.equal(wx.calls.length, 2);
    assert.equal(wx.calls[1].url, `${BASE}/v1/requests/${wx.calls[0].data.requestId}/stop`);
    assert.equal(wx.calls[1].method, 'POST');
    assert.deepEqual(seen.done.map((d) => d.finishReason), ['stopped']);
  });

  test('the idle watchdog aborts a silent connection (fake clock) and reports once', async () => {
    const fixture = loadFixture('answer');
    const reply = { ...replyFrom(fixture), end: 'silent' };
    reply.pieces = reply.pieces.slice(0, 5); // meta and a few deltas, then the network goes quiet
    const { seen, wx, clock } = await run([reply], { chat: { idleTimeoutMs: 5000, maxResumes: 0 } });
    assert.deepEqual(seen.terminal, []);
    clock.tick(4999);
    assert.deepEqual(seen.terminal, []);
    clock.tick(1);
    await wx.idle();
    assert.deepEqual(seen.errors.map((e) => e.code), ['client_idle_timeout']);
    assert.equal(wx.tasks[0].aborted, true);
    assert.equal(seen.errors[0].text, seen.deltas[seen.deltas.length - 1].text);
    clock.tick(60000);
    await wx.idle();
    assert.equal(seen.terminal.length, 1);
    assert.equal(clock.pending, 0, 'no timer left behind');
  });

  test('by default a connection the watchdog aborted is resumed from the last offset', async () => {
    const fixture = loadFixture('drop_and_resume');
    const silent = { ...replyFrom(fixture), end: 'silent' }; // all recorded pieces, then nothing
    const { seen, wx, clock } = await run([silent, replyFrom(fixture.resume)], { chat: { idleTimeoutMs: 5000 } });
    assert.deepEqual(seen.terminal, []);
    clock.tick(5000);
    await wx.idle();
    assert.equal(wx.tasks[0].aborted, true);
    assert.deepEqual(wx.calls.map((c) => c.method), ['POST', 'GET']);
    assert.equal(wx.calls[1].url, `${BASE}${fixture.resume.path}?after=${fixture.resumeAfter}`);
    assertAnswerEvents(seen, fixture);
    assert.deepEqual(seen.terminal, ['done']);
  });

  test('each chunk re-arms the watchdog', async () => {
    const fixture = loadFixture('answer');
    const clock = createClock();
    const pieces = replyFrom(fixture).pieces;
    let listener = null;
    const wx = { request() { return { onChunkReceived(fn) { listener = fn; }, abort() {} }; } };
    const seen = [];
    kit().streamChat({ url: BASE, token: 't', prompt: 'q', wx, idleTimeoutMs: 1000,
      setTimeout: clock.setTimeout, clearTimeout: clock.clearTimeout,
      onDone: (d) => seen.push(d.finishReason), onError: (e) => seen.push(e.code) });
    for (const piece of pieces) {
      clock.tick(999);
      listener({ data: piece });
    }
    assert.deepEqual(seen, ['stop']);
    assert.equal(clock.pending, 0);
  });

  test('the idle watchdog with the default timers (node mock timers)', (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const tasks = [];
    const wx = { request() { const task = { aborted: false, onChunkReceived() {}, abort() { this.aborted = true; } };
      tasks.push(task); return task; } };
    const errors = [];
    kit().streamChat({ url: BASE, token: 't', prompt: 'q', wx,
      onError: (e) => errors.push(e), onDone: () => assert.fail('no done expected') });
    t.mock.timers.tick(29999);
    assert.deepEqual(errors, []);
    t.mock.timers.tick(1); // the default idleTimeoutMs is 30 s
    assert.deepEqual(errors.map((e) => e.code), ['client_idle_timeout']);
    assert.equal(tasks[0].aborted, true);
  });

  test('fail is a network_error', async () => {
    const { seen } = await run([{ status: 200, headers: {}, pieces: [], end: 'fail', errMsg: 'request:fail timeout' }]);
    assert.deepEqual(seen.errors.map((e) => [e.code, e.message]), [['network_error', 'request:fail timeout']]);
  });

  test('a stream that ends without done is reported after the grace period; late chunks still count', async () => {
    const fixture = loadFixture('answer');
    const all = replyFrom(fixture).pieces;
    // success arrives, then (within endGraceMs) the last chunks: the answer completes normally.
    const late = all.slice(-3);
    const early = { ...replyFrom(fixture), pieces: all.slice(0, -3),
      after: [(options, task) => late.forEach((p) => task.chunkListeners.forEach((fn) => fn({ data: p })))] };
    const ok = await run([early]);
    assert.deepEqual(ok.seen.terminal, ['done']);
    assert.equal(ok.seen.done[0].text, fixture.expectedText);
    // Without them, the stream was cut: stream_ended once the grace period is over (resume off).
    const cut = await run([{ ...replyFrom(fixture), pieces: all.slice(0, -3) }], { chat: { maxResumes: 0 } });
    assert.deepEqual(cut.seen.terminal, []);
    cut.clock.tick(99);
    assert.deepEqual(cut.seen.terminal, []);
    cut.clock.tick(1);
    assert.deepEqual(cut.seen.errors.map((e) => e.code), ['stream_ended']);
  });

  test('a runtime without chunked transfer: the whole body arrives in success', async () => {
    const fixture = loadFixture('answer');
    const body = Buffer.concat(fixture.chunks.map((c) => Buffer.from(c, 'base64')));
    for (const successData of [new Uint8Array(body).buffer, body.toString('utf8')]) {
      const { seen } = await run([{ status: 200, headers: fixture.headers, pieces: [], end: 'success', successData }]);
      assert.deepEqual(seen.terminal, ['done']);
      assert.equal(seen.done[0].text, fixture.expectedText);
    }
  });

  test('exactly one terminal callback even when the transport reports twice', async () => {
    const fixture = loadFixture('answer');
    const reply = { ...replyFrom(fixture),
      after: [(options) => { options.success({ statusCode: 200, data: new ArrayBuffer(0) });
        options.fail({ errMsg: 'late' }); options.complete({}); }] };
    const { seen, clock, wx } = await run([reply]);
    clock.tick(100000);
    await wx.idle();
    assert.deepEqual(seen.terminal, ['done']);
    const cut = loadFixture('upstream_cut');
    const again = await run([{ ...replyFrom(cut), after: reply.after }]);
    again.clock.tick(100000);
    assert.deepEqual(again.seen.terminal, ['error']);
  });

  test('a callback that throws does not derail the stream', async (t) => {
    const logged = t.mock.method(console, 'error', () => {});
    const fixture = loadFixture('answer');
    const { seen } = await run([replyFrom(fixture, { split: { seed: 11, maxSize: 5 } })], {
      chat: { onDelta() { throw new Error('page bug'); }, onMeta() { throw new Error('page bug'); } },
    });
    assert.deepEqual(seen.terminal, ['done']);
    assert.equal(seen.done[0].text, fixture.expectedText);
    assert.ok(logged.mock.callCount() > 1);
  });

  test('a malformed delta is a bad_response error', async () => {
    const bytes = new Uint8Array(Buffer.from('event: meta\ndata: {"messageId":"m"}\n\nid: 1\ndata: not json\n\n'));
    const { seen, wx } = await run([{ status: 200, headers: {}, pieces: [bytes.buffer], end: 'success' }]);
    assert.deepEqual(seen.errors.map((e) => e.code), ['bad_response']);
    assert.equal(wx.tasks[0].aborted, true);
  });

  test('optional body fields go to the server; the url may carry a trailing slash', async () => {
    const { wx } = await run([null], { chat: { conversationId: 'c1', model: 'deepseek', requestId: 'r-1',
      terminal: 'ios', window: 3, requestTimeoutMs: 1234 } });
    assert.deepEqual(wx.calls[0].data, { prompt: 'q', conversationId: 'c1', model: 'deepseek', requestId: 'r-1',
      terminal: 'ios', window: 3 });
    assert.equal(wx.calls[0].url, `${BASE}/v1/chat/stream`);
    assert.equal(wx.calls[0].timeout, 1234);
  });

  test('the global wx is used when none is passed; uni / Taro objects work the same', async () => {
    const fixture = loadFixture('answer');
    const fake = createFakeWx(() => replyFrom(fixture));
    const done = [];
    globalThis.wx = fake;
    try {
      kit().streamChat({ url: BASE, token: 't', prompt: 'q', onDone: (d) => done.push(d.text) });
      await fake.idle();
    } finally {
      delete globalThis.wx;
    }
    assert.deepEqual(done, [fixture.expectedText]);
    assert.throws(() => kit().streamChat({ url: BASE, token: 't', prompt: 'q' }), /wx/);
    const uni = createFakeWx(() => replyFrom(fixture));
    const viaUni = [];
    kit().streamChat({ url: BASE, token: 't', prompt: 'q', wx: uni, onDone: (d) => viaUni.push(d.text) });
    await uni.idle();
    assert.deepEqual(viaUni, [fixture.expectedText]);
  });
});

describe('the other endpoints, as Promises', () => {
  function fakeJson(status, data) {
    const calls = [];
    return {
      calls,
      request(options) {
        calls.push(options);
        setImmediate(() => options.success({ statusCode: status, data, header: {} }));
        return {};
      },
    };
  }

  test('each helper calls the documented route with the bearer token', async () => {
    const api = kit();
    const cases = [
      [(o) => api.listConversations(o, { limit: 20, cursor: 'a b' }), 'GET', '/v1/conversations?limit=20&cursor=a%20b'],
      [(o) => api.listConversations(o), 'GET', '/v1/conversations'],
      [(o) => api.listMessages(o, 'c/1', { limit: 50 }), 'GET', '/v1/conversations/c%2F1/messages?limit=50'],
      [(o) => api.setFeedback(o, 'm1', -1), 'PUT', '/v1/messages/m1/feedback', { useful: -1 }],
      [(o) => api.deleteConversation(o, 'c1'), 'DELETE', '/v1/conversations/c1'],
      [(o) => api.stopMessage(o, 'm1'), 'POST', '/v1/messages/m1/stop', {}],
      [(o) => api.devLogin(o, 'u1'), 'POST', '/v1/auth/dev', { userId: 'u1' }],
    ];
    for (const [callIt, method, route, data] of cases) {
      const wx = fakeJson(200, { ok: true });
      assert.deepEqual(await callIt({ url: `${BASE}/`, token: 'tkn', wx }), { ok: true });
      assert.equal(wx.calls[0].method, method);
      assert.equal(wx.calls[0].url, BASE + route);
      assert.equal(wx.calls[0].header.Authorization, 'Bearer tkn');
      assert.deepEqual(wx.calls[0].data, data);
    }
  });

  test('answers as JSON text, 204 without a body, errors and network failures', async () => {
    const api = kit();
    assert.deepEqual(await api.listConversations({ url: BASE, token: 't', wx: fakeJson(200, '{"items":[]}') }),
      { items: [] });
    assert.equal(await api.deleteConversation({ url: BASE, token: 't', wx: fakeJson(204, '') }, 'c1'), null);
    await assert.rejects(api.setFeedback({ url: BASE, token: 't', wx: fakeJson(404, { code: 'not_found',
      message: 'no such message' }) }, 'm', 1), { code: 'not_found', status: 404, message: 'no such message' });
    await assert.rejects(api.listConversations({ url: BASE, token: 't', wx: fakeJson(401, '') }),
      { code: 'http_401', status: 401 });
    const failing = { request(o) { setImmediate(() => o.fail({ errMsg: 'request:fail' })); return {}; } };
    await assert.rejects(api.listConversations({ url: BASE, token: 't', wx: failing }), { code: 'network_error' });
  });

  test('createClient binds url, token and wx once', async () => {
    const wx = fakeJson(200, { items: [], nextCursor: null });
    const client = kit().createClient({ url: BASE, token: 'tkn', wx });
    assert.deepEqual(await client.listMessages('c1'), { items: [], nextCursor: null });
    assert.equal(wx.calls[0].url, `${BASE}/v1/conversations/c1/messages`);
    const fixture = loadFixture('answer');
    const streamWx = createFakeWx(() => replyFrom(fixture));
    const texts = [];
    kit().createClient({ url: BASE, token: 'tkn', wx: streamWx })
      .streamChat({ prompt: 'q', onDone: (d) => texts.push(d.text) });
    await streamWx.idle();
    assert.deepEqual(texts, [fixture.expectedText]);
  });
});
