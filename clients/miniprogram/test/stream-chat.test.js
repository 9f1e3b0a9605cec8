'use strict';
// streamChat against a fake `wx` that replays chunks recorded from the real server
// (tests/functional/test_record_miniprogram_fixtures.py writes test/fixtures/*.json).
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { streamChat } = require('../chatrelay.js');

const FIXTURES = path.join(__dirname, 'fixtures');
const load = (name) => JSON.parse(fs.readFileSync(path.join(FIXTURES, `${name}.json`), 'utf8'));

function mulberry32(seed) {
  return function () {
    seed |= 0; seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Recorded network reads, merged and re-split at seeded random places (as wx does), as ArrayBuffers. */
function pieces(response, seed) {
  const all = Buffer.concat(response.chunks.map((c) => Buffer.from(c, 'base64')));
  if (seed === null) return response.chunks.map((c) => new Uint8Array(Buffer.from(c, 'base64')).buffer);
  const random = mulberry32(seed);
  const out = [];
  for (let at = 0; at < all.length;) {
    const size = 1 + Math.floor(random() * 40);
    out.push(new Uint8Array(all.subarray(at, at + size)).buffer);
    at += size;
  }
  return out;
}

/**
 * A fake wx: each request replays the next recorded response asynchronously. A response
 * cut short (the recorder stopped reading) ends with `fail`, as a dropped network does.
 */
function fakeWx(fixture, seed) {
  const calls = [];
  const responses = fixture.responses.slice();
  return {
    calls,
    request(options) {
      calls.push(options);
      const task = { aborted: false, chunkListener: null,
        onChunkReceived(cb) { this.chunkListener = cb; }, abort() { this.aborted = true; } };
      if (options.url.endsWith('/stop')) return task;
      const response = responses.shift();
      setImmediate(async () => {
        if (!response) { options.fail({ errMsg: 'request:fail no more recordings' }); return; }
        if (response.status !== 200) {
          // A JSON error never reaches onChunkReceived; it arrives in success().
          options.success({ statusCode: response.status, data: new TextEncoder().encode(response.body).buffer });
          return;
        }
        for (const piece of pieces(response, seed)) {
          if (task.aborted) return;
          task.chunkListener({ data: piece });
          await new Promise((r) => setImmediate(r));
        }
        if (task.aborted) return;
        const cutShort = fixture.name === 'drop_and_resume' && responses.length > 0;
        if (cutShort) options.fail({ errMsg: 'request:fail network lost' });
        else options.success({ statusCode: 200, data: new ArrayBuffer(0) });
      });
      return task;
    },
  };
}

function run(fixture, seed, extra = {}) {
  return new Promise((resolve) => {
    const wx = fakeWx(fixture, seed);
    const seen = { meta: [], deltas: [], done: [], errors: [] };
    streamChat({
      url: 'https://api.example.com/', token: 'tkn', prompt: 'q', wx,
      onMeta: (m) => seen.meta.push(m),
      onDelta: (d, text) => seen.deltas.push([d, text]),
      onDone: (d) => { seen.done.push(d); setImmediate(() => resolve({ seen, wx })); },
      onError: (e) => { seen.errors.push(e); setImmediate(() => resolve({ seen, wx })); },
      ...extra,
    });
  });
}

for (const seed of [null, 1, 2, 3, 42]) {
  const how = seed === null ? 'as recorded' : `re-split with seed ${seed}`;

  test(`a recorded answer, ${how}`, async () => {
    const fixture = load('answer');
    const { seen, wx } = await run(fixture, seed);
    assert.equal(seen.errors.length, 0);
    assert.equal(seen.done.length, 1);
    assert.equal(seen.done[0].text, fixture.expectedText);
    assert.equal(seen.done[0].finishReason, 'stop');
    assert.equal(seen.meta.length, 1);
    assert.ok(seen.deltas.length > 3);
    const post = wx.calls[0];
    assert.equal(post.method, 'POST');
    assert.equal(post.url, 'https://api.example.com/v1/chat/stream');
    assert.equal(post.enableChunked, true);
    assert.equal(post.responseType, 'arraybuffer');
    assert.equal(post.header.Authorization, 'Bearer tkn');
  });

  test(`an upstream cut mid-answer, ${how}`, async () => {
    const fixture = load('upstream_cut');
    const { seen } = await run(fixture, seed);
    assert.equal(seen.done.length, 0);
    assert.deepEqual(seen.errors.map((e) => e.code), ['upstream_disconnected']);
    assert.equal(seen.errors[0].text, fixture.expectedText);
  });

  test(`a drop mid-answer resumes from the last id without posting again, ${how}`, async () => {
    const fixture = load('drop_and_resume');
    const { seen, wx } = await run(fixture, seed);
    assert.equal(seen.errors.length, 0, JSON.stringify(seen.errors));
    assert.equal(seen.done[0].text, fixture.expectedText);
    assert.equal(seen.meta.length, 1);
    assert.deepEqual(wx.calls.map((c) => c.method), ['POST', 'GET']);
    assert.match(wx.calls[1].url, new RegExp(`/v1/messages/[^/]+/stream\\?after=${fixture.resumeAfter}$`));
  });
}

test('an HTTP error with a JSON body is reported through onError', async () => {
  const { seen } = await run(load('not_found'), null);
  assert.deepEqual(seen.errors.map((e) => [e.code, e.status]), [['not_found', 404]]);
  assert.equal(seen.done.length, 0);
});

test('stop() aborts the request and calls the stop endpoint with the message id', async () => {
  const fixture = load('answer');
  const wx = fakeWx(fixture, 5);
  const seen = { done: [], errors: [] };
  let messageId = null;
  await new Promise((resolve) => {
    const handle = streamChat({
      url: 'https://api.example.com', token: 'tkn', prompt: 'q', wx,
      onMeta: (m) => { messageId = m.messageId; },
      onDelta: () => { if (!seen.done.length) handle.stop(); },
      onDone: (d) => { seen.done.push(d); setTimeout(resolve, 20); },
      onError: (e) => { seen.errors.push(e); resolve(); },
    });
  });
  assert.equal(seen.done.length, 1);
  assert.equal(seen.done[0].finishReason, 'stopped');
  assert.equal(seen.errors.length, 0);
  const stopCall = wx.calls.find((c) => c.url.endsWith('/stop'));
  assert.equal(stopCall.url, `https://api.example.com/v1/messages/${messageId}/stop`);
  assert.equal(stopCall.method, 'POST');
});

test('the idle watchdog aborts a silent connection and reports it once resumes run out', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const tasks = [];
  const wx = { request(options) { const task = { aborted: false, onChunkReceived() {}, abort() { this.aborted = true; } };
    tasks.push(task); return task; } };
  const errors = [];
  streamChat({ url: 'https://x', token: 't', prompt: 'q', wx, idleTimeoutMs: 5000, maxResumes: 2,
    onError: (e) => errors.push(e), onDone: () => assert.fail('no done expected') });
  t.mock.timers.tick(4999);
  assert.equal(errors.length, 0);
  t.mock.timers.tick(1);
  // No meta was ever seen, so there is nothing to resume: the error is reported at once.
  assert.deepEqual(errors.map((e) => e.code), ['client_idle_timeout']);
  assert.equal(tasks[0].aborted, true);
  t.mock.timers.tick(60000);
  assert.equal(errors.length, 1);
});

test('exactly one terminal callback even if the transport reports twice', async () => {
  const fixture = load('answer');
  const wx = fakeWx(fixture, null);
  const original = wx.request.bind(wx);
  wx.request = (options) => {
    const task = original(options);
    const success = options.success;
    options.success = (res) => { success(res); success(res); options.fail({ errMsg: 'late' }); };
    return task;
  };
  const { seen } = await run(fixture, null, { wx });
  assert.equal(seen.done.length + seen.errors.length, 1);
});
