'use strict';
// The behavioural suite every platform adapter passes: one function, run once per adapter
// (test/adapters.test.js) against its own fake runtime (test/fakes/platforms.js) and the fake
// server (test/fakes/server.js). node's runner also runs this file: it then defines no test.
const { describe, test } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { createClock, withoutTextDecoder } = require('./helpers.js');
const { createServer, codePoints } = require('./fakes/server.js');

const KIT_DIR = path.join(__dirname, '..');
const BASE = 'https://api.example.com';
const REQUEST_ID = /^mp-[0-9a-z]+-[0-9a-z]+$/;

function kit() {
  for (const file of ['chatrelay.js', 'sse-parser.js', 'adapters.js']) delete require.cache[path.join(KIT_DIR, file)];
  return require(path.join(KIT_DIR, 'chatrelay.js'));
}

/**
 * Runs one streamChat on `platform` until it ends (the fake clock moves 250 ms a round, so
 * polls, watchdogs and re-posts happen as they would). `during(ctx, round)` may act each round.
 */
async function drive(platform, server, { chat = {}, fault, seed = 1, during } = {}) {
  const fake = platform.make(server, { seed, fault, maxSize: 3 + seed * 4 });
  const clock = createClock();
  const seen = { meta: [], deltas: [], done: [], errors: [], terminal: [] };
  const chatrelay = kit();
  const ctx = { fake, clock, seen, server };
  if (typeof chat === 'function') chat = chat(ctx); // callbacks that need ctx.handle
  const handle = chatrelay.streamChat({
    url: BASE, token: 'tkn', prompt: 'q', ...fake.options,
    setTimeout: clock.setTimeout, clearTimeout: clock.clearTimeout,
    onMeta: (m) => seen.meta.push(m),
    onDelta: (delta, text, offset) => seen.deltas.push({ delta, text, offset }),
    onDone: (d) => { seen.done.push(d); seen.terminal.push('done'); },
    onError: (e) => { seen.errors.push(e); seen.terminal.push('error'); },
    ...chat,
  });
  ctx.handle = handle;
  for (let round = 0; round < 400 && !seen.terminal.length; round++) {
    await fake.idle();
    if (during) await during(ctx, round);
    if (seen.terminal.length) break;
    clock.tick(250);
  }
  await fake.idle();
  ctx.stopReply = ctx.stopPromise ? await ctx.stopPromise : undefined;
  await fake.idle();
  return ctx;
}

/** What every ending must satisfy: one terminal callback, deltas adding up, offsets in code points. */
function assertConsistent(seen) {
  assert.equal(seen.terminal.length, 1, `exactly one terminal callback, saw ${seen.terminal}`);
  let text = '';
  for (const { delta, text: soFar, offset } of seen.deltas) {
    text += delta;
    assert.equal(soFar, text, 'onDelta gets the text so far');
    assert.equal(offset, codePoints(text), 'the offset counts code points');
  }
  assert.ok(seen.meta.length <= 1, 'onMeta at most once');
  return text;
}

function postsOf(fake) { return fake.calls.filter((c) => c.method === 'POST' && /\/v1\/chat\/stream/.test(c.url)); }
function bodyOf(call) { return typeof call.data === 'string' ? JSON.parse(call.data) : call.data; }

/** platform: { name, make(server, {seed, fault, maxSize}) -> { options, calls, idle } } */
function behaviouralSuite(platform) {
  describe(platform.name, () => {
    for (const format of ['json', 'text']) {
      for (const seed of [1, 2]) {
        test(`streams an answer with CR, CRLF, Chinese and emoji exactly (format=${format}, seed ${seed})`, () =>
          withoutTextDecoder(async () => {
            const server = createServer();
            const { seen, fake, handle } = await drive(platform, server, { chat: { format }, seed });
            const text = assertConsistent(seen);
            assert.deepEqual(seen.errors, []);
            assert.equal(text, server.answer);
            assert.equal(seen.done[0].text, server.answer);
            assert.equal(seen.done[0].finishReason, 'stop');
            assert.equal(seen.done[0].usage.completionTokens, 6);
            const turn = server.turns.get(handle.requestId);
            assert.deepEqual(seen.meta.map((m) => m.messageId), [turn.messageId]);
            assert.equal(seen.meta[0].conversationId, turn.conversationId);
            assert.match(handle.requestId, REQUEST_ID);
            for (const post of postsOf(fake)) assert.equal(bodyOf(post).requestId, handle.requestId);
          }));
      }
    }

    test('stop() mid-answer stops the turn by its message id', async () => {
      const server = createServer();
      const ctx = await drive(platform, server, {
        chat: (c) => ({ onDelta: () => { if (!c.stopPromise) c.stopPromise = c.handle.stop(); } }),
      });
      assert.deepEqual(ctx.seen.terminal, ['done']);
      assert.equal(ctx.seen.done[0].finishReason, 'stopped');
      const turn = server.turns.get(ctx.handle.requestId);
      assert.ok(server.log.some((l) => l.route === `POST /v1/messages/${turn.messageId}/stop`), 'stop by message id');
      assert.equal(ctx.stopReply.stopRequested, true);
      assert.equal(turn.status, 'stopped');
    });

    test('stop() before the response head stops the turn by its request id', async () => {
      const server = createServer();
      const ctx = await drive(platform, server, {
        fault: (req, index) => (index === 0 ? { beforeHead: 'silent' } : null),
        during: (c, round) => { if (round === 2 && !c.stopPromise) c.stopPromise = c.handle.stop(); },
      });
      assert.deepEqual(ctx.seen.done.map((d) => d.finishReason), ['stopped']);
      assert.ok(server.log.some((l) => l.route === `POST /v1/requests/${ctx.handle.requestId}/stop`));
      assert.ok(server.stopsBefore.has(ctx.handle.requestId), 'the server will store the turn stopped');
      assert.equal(ctx.stopReply.stopRequested, true);
    });

    for (const how of ['fail', 'silent']) {
      test(`a drop mid-answer (${how}) is resumed: the full answer, nothing twice`, async () => {
        const server = createServer();
        const { seen } = await drive(platform, server, {
          chat: { format: 'text' }, seed: 3,
          fault: (req, index) => (index === 0 ? { cutAfter: 4, how } : null),
        });
        const text = assertConsistent(seen);
        assert.deepEqual(seen.terminal, ['done']);
        assert.equal(text, server.answer);
        assert.equal(seen.done[0].text, server.answer);
      });

      test(`a drop before the response head (${how}) posts the same requestId again`, async () => {
        const server = createServer();
        const { seen, fake, handle } = await drive(platform, server, {
          seed: 4, fault: (req, index) => (index === 0 ? { beforeHead: how } : null),
        });
        assertConsistent(seen);
        assert.deepEqual(seen.terminal, ['done']);
        assert.equal(seen.done[0].text, server.answer);
        const posts = postsOf(fake);
        assert.ok(posts.length >= 2, 'posted again');
        for (const post of posts) assert.equal(bodyOf(post).requestId, handle.requestId);
      });
    }

    test('a refused question: onError with the server code and field (422)', async () => {
      const server = createServer();
      const { seen } = await drive(platform, server, { chat: { prompt: 'bad \u0001 prompt' } });
      assertConsistent(seen);
      assert.deepEqual(seen.errors.map((e) => [e.code, e.field, e.status]), [['invalid_request', 'prompt', 422]]);
      assert.match(seen.errors[0].message, /控制字符/);
    });

    test('a bad token: onError unauthorized (401)', async () => {
      const server = createServer();
      const { seen } = await drive(platform, server, { chat: { token: 'expired' } });
      assert.deepEqual(seen.errors.map((e) => [e.code, e.status]), [['unauthorized', 401]]);
    });

    test('the provider failed mid-answer: onError with its code and the partial answer', async () => {
      const server = createServer({ ending: { kind: 'error', code: 'upstream_disconnected' } });
      const { seen } = await drive(platform, server, { chat: { format: 'text' } });
      assertConsistent(seen);
      assert.deepEqual(seen.errors.map((e) => [e.code, e.finishReason]), [['upstream_disconnected', 'error']]);
      assert.equal(seen.errors[0].text, server.answer);
    });

    test('the content check cut the answer: onError answer_blocked, the text cut at the offset', async () => {
      const server = createServer({ ending: { kind: 'blocked', offset: 9 } });
      const { seen } = await drive(platform, server);
      assert.equal(seen.terminal.length, 1);
      assert.deepEqual(seen.errors.map((e) => [e.code, e.offset]), [['answer_blocked', 9]]);
      assert.equal(seen.errors[0].text, server.expectedText());
      assert.equal(codePoints(seen.errors[0].text), 9);
    });
  });
}

module.exports = { behaviouralSuite, drive };
