'use strict';
// Shared by the tests. node's runner also runs this file (any .js under test/): it then checks itself.

/** mulberry32: a tiny deterministic PRNG, so "random" splits are the same on every run. */
function mulberry32(seed) {
  let a = seed >>> 0;
  return function next() {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const utf8 = (text) => new Uint8Array(Buffer.from(text, 'utf8'));

/** bytes cut at the given (sorted) positions; empty pieces included. */
function splitAt(bytes, cuts) {
  const pieces = [];
  let from = 0;
  for (const cut of cuts) {
    pieces.push(bytes.slice(from, cut));
    from = cut;
  }
  pieces.push(bytes.slice(from));
  return pieces;
}

/** bytes cut into pieces of 1..maxSize bytes, as fresh ArrayBuffers (what onChunkReceived gives). */
function randomSplit(bytes, random, maxSize) {
  const pieces = [];
  for (let at = 0; at < bytes.length;) {
    const size = 1 + Math.floor(random() * maxSize);
    pieces.push(bytes.slice(at, at + size).buffer);
    at += size;
  }
  return pieces;
}

/** Run fn with globalThis.TextDecoder removed, as on devices; restored afterwards. */
function withoutTextDecoder(fn) {
  const saved = globalThis.TextDecoder;
  delete globalThis.TextDecoder;
  let result;
  try {
    result = fn();
  } catch (error) {
    globalThis.TextDecoder = saved;
    throw error;
  }
  if (result && typeof result.then === 'function') {
    return result.finally(() => { globalThis.TextDecoder = saved; });
  }
  globalThis.TextDecoder = saved;
  return result;
}

module.exports = { mulberry32, utf8, splitAt, randomSplit, withoutTextDecoder };

/** A fake clock for setTimeout / clearTimeout injected into streamChat: time moves only on tick(). */
function createClock() {
  let now = 0;
  let nextId = 1;
  const timers = new Map();
  return {
    setTimeout(fn, ms) { const id = nextId++; timers.set(id, { at: now + (ms || 0), fn }); return id; },
    clearTimeout(id) { timers.delete(id); },
    tick(ms) {
      const target = now + ms;
      for (;;) {
        let due = null;
        for (const [id, timer] of timers) if (timer.at <= target && (!due || timer.at < due[1].at)) due = [id, timer];
        if (!due) break;
        timers.delete(due[0]);
        now = due[1].at;
        due[1].fn();
      }
      now = target;
    },
    get pending() { return timers.size; },
    get now() { return now; },
  };
}

const fs = require('node:fs');
const path = require('node:path');
const FIXTURES = path.join(__dirname, 'fixtures');

function loadFixture(name) {
  return JSON.parse(fs.readFileSync(path.join(FIXTURES, `${name}.json`), 'utf8'));
}

/** A recording's bytes, as recorded (one piece per network read) or re-split with a seeded PRNG. */
function recordedPieces(recording, split) {
  const reads = recording.chunks.map((c) => new Uint8Array(Buffer.from(c, 'base64')));
  if (!split) return reads.map((r) => r.slice().buffer);
  const all = new Uint8Array(Buffer.concat(reads));
  return randomSplit(all, mulberry32(split.seed), split.maxSize);
}

/**
 * A reply for the fake wx from a recording: headers, the chunks, then how the request ends
 * ('success' as wx does after a complete body, 'fail' for a dropped network, 'silent' for an
 * iOS drop that reports nothing).
 */
function replyFrom(recording, options = {}) {
  if (recording.status !== 200) {
    return { status: recording.status, headers: recording.headers, body: recording.body, end: 'success',
      bodyAs: options.bodyAs || 'arraybuffer' };
  }
  return { status: 200, headers: recording.headers, pieces: recordedPieces(recording, options.split),
    end: options.end || 'success' };
}

function encodeBody(body, as) {
  if (as === 'string') return body;
  if (as === 'object') return JSON.parse(body);
  return new Uint8Array(Buffer.from(body, 'utf8')).buffer;
}

/**
 * A fake `wx` whose request() replays replies asynchronously (one step per setImmediate),
 * like the real one: onHeadersReceived, onChunkReceived per piece, then success / fail and
 * complete. abort() makes it report `request:fail abort`, as wx does. respond(options, index)
 * returns the reply for each call (or null: the request hangs).
 */
/** Runs steps one per setImmediate; idle() resolves once nothing is left to deliver. */
function scheduler() {
  let busy = 0;
  const waiters = [];
  function later(fn) {
    busy += 1;
    setImmediate(() => {
      try { fn(); } finally {
        busy -= 1;
        if (!busy) waiters.splice(0).forEach((resolve) => resolve());
      }
    });
  }
  function run(steps, isCancelled) {
    let at = 0;
    const next = () => {
      if (isCancelled() || at >= steps.length) return;
      steps[at++]();
      later(next);
    };
    later(next);
  }
  return { later, run, idle: () => (busy ? new Promise((resolve) => waiters.push(resolve)) : Promise.resolve()) };
}

function createFakeWx(respond) {
  const calls = [];
  const tasks = [];
  const { later, run, idle } = scheduler();

  function request(options) {
    const index = calls.length;
    calls.push(options);
    const task = {
      aborted: false, finished: false, chunkListeners: [], headerListeners: [],
      onChunkReceived(fn) { this.chunkListeners.push(fn); },
      offChunkReceived(fn) { this.chunkListeners = this.chunkListeners.filter((f) => f !== fn); },
      onHeadersReceived(fn) { this.headerListeners.push(fn); },
      abort() {
        if (this.aborted || this.finished) return;
        this.aborted = true;
        later(() => {
          if (options.fail) options.fail({ errMsg: 'request:fail abort' });
          if (options.complete) options.complete({ errMsg: 'request:fail abort' });
        });
      },
    };
    tasks.push(task);
    const reply = respond(options, index);
    if (!reply) return task;
    const steps = [];
    const header = reply.headers || {};
    steps.push(() => task.headerListeners.forEach((fn) => fn({ statusCode: reply.status, header })));
    if (reply.status !== 200 && reply.chunkBody) {
      steps.push(() => task.chunkListeners.forEach((fn) => fn({ data: encodeBody(reply.body, 'arraybuffer') })));
    }
    for (const piece of reply.pieces || []) {
      steps.push(() => task.chunkListeners.forEach((fn) => fn({ data: piece })));
    }
    steps.push(() => {
      if (reply.end === 'silent') return;
      task.finished = true;
      if (reply.end === 'fail') {
        const res = { errMsg: reply.errMsg || 'request:fail network lost' };
        if (options.fail) options.fail(res);
        if (options.complete) options.complete(res);
        return;
      }
      let data = new ArrayBuffer(0); // a streamed body is not repeated in success
      if (reply.successData !== undefined) data = reply.successData;
      else if (reply.body !== undefined && !reply.chunkBody) data = encodeBody(reply.body, reply.bodyAs);
      const res = { statusCode: reply.status, data, header, errMsg: 'request:ok' };
      if (options.success) options.success(res);
      if (options.complete) options.complete(res);
      (reply.after || []).forEach((extra) => extra(options, task));
    });
    run(steps, () => task.aborted);
    return task;
  }

  return { calls, tasks, request, idle };
}

module.exports.createClock = createClock;
module.exports.loadFixture = loadFixture;
module.exports.recordedPieces = recordedPieces;
module.exports.replyFrom = replyFrom;
module.exports.createFakeWx = createFakeWx;
module.exports.scheduler = scheduler;

if (require.main === module) {
  const test = require('node:test');
  const assert = require('node:assert/strict');

  test('mulberry32 is deterministic and stays in [0, 1)', () => {
    const a = mulberry32(42);
    const b = mulberry32(42);
    const values = Array.from({ length: 1000 }, () => a());
    assert.deepEqual(values, Array.from({ length: 1000 }, () => b()));
    assert.ok(values.every((v) => v >= 0 && v < 1));
    assert.ok(new Set(values).size > 990);
  });

  test('the fake clock fires due timers in order, and only those', () => {
    const clock = createClock();
    const fired = [];
    clock.setTimeout(() => fired.push('b'), 20);
    clock.setTimeout(() => fired.push('a'), 10);
    const c = clock.setTimeout(() => fired.push('c'), 30);
    clock.tick(25);
    clock.clearTimeout(c);
    clock.tick(100);
    assert.deepEqual(fired, ['a', 'b']);
    assert.equal(clock.pending, 0);
  });

  test('splitAt and randomSplit keep every byte, in order', () => {
    const bytes = utf8('你好😀 bytes');
    assert.deepEqual(Buffer.concat(splitAt(bytes, [0, 3, 3, 7])), Buffer.from(bytes));
    const pieces = randomSplit(bytes, mulberry32(1), 4);
    assert.ok(pieces.every((p) => p instanceof ArrayBuffer && p.byteLength >= 1 && p.byteLength <= 4));
    assert.deepEqual(Buffer.concat(pieces.map((p) => new Uint8Array(p))), Buffer.from(bytes));
  });
}
