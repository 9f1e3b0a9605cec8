'use strict';
// The byte-level SSE parser: every split position, seeded random splits, with and without TextDecoder.
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');

const PARSER = path.join(__dirname, '..', 'sse-parser.js');

function load() {
  delete require.cache[require.resolve(PARSER)];
  return require(PARSER);
}

function mulberry32(seed) {
  return function () {
    seed |= 0; seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function parseChunks(chunks) {
  const { createParser } = load();
  const events = [];
  const retries = [];
  const parser = createParser({ onEvent: (e) => events.push(e), onRetry: (r) => retries.push(r) });
  for (const chunk of chunks) parser.feed(chunk);
  parser.end();
  return { events, retries };
}

const bytes = (s) => new Uint8Array(Buffer.from(s, 'utf8'));

const STREAM =
  '\ufeff: stream open\n\n' +
  'event: meta\ndata: {"conversationId":"c1","messageId":"m1"}\n\n' +
  'id: 3\ndata: {"delta":"你好，"}\n\n' +
  'id: 6\r\ndata: {"delta":"世界😀\\n"}\r\n\r\n' +
  ': ping\n\n' +
  'data: line one\rdata: line two 🚀 表情\r\r' +
  'retry: 2500\nid: 9\ndata:no-space\ndata:  two spaces\n\n' +
  'event: empty\n\n' +
  'event: done\ndata: {"finishReason":"stop"}\n\n' +
  'data: [DONE]\n\n' +
  'data: never terminated';

const EXPECTED = [
  { event: 'meta', data: '{"conversationId":"c1","messageId":"m1"}', id: '' },
  { event: 'message', data: '{"delta":"你好，"}', id: '3' },
  { event: 'message', data: '{"delta":"世界😀\\n"}', id: '6' },
  { event: 'message', data: 'line one\nline two 🚀 表情', id: '6' },
  { event: 'message', data: 'no-space\n two spaces', id: '9' },
  { event: 'done', data: '{"finishReason":"stop"}', id: '9' },
  { event: 'message', data: '[DONE]', id: '9' },
];

function withAndWithoutTextDecoder(name, fn) {
  test(`${name} (TextDecoder)`, () => fn());
  test(`${name} (built-in decoder, no TextDecoder)`, () => {
    const saved = globalThis.TextDecoder;
    delete globalThis.TextDecoder;
    try { fn(); } finally { globalThis.TextDecoder = saved; }
  });
}

withAndWithoutTextDecoder('whole stream in one chunk', () => {
  const { events, retries } = parseChunks([bytes(STREAM)]);
  assert.deepEqual(events, EXPECTED);
  assert.deepEqual(retries, [2500]);
});

withAndWithoutTextDecoder('split at every byte position', () => {
  const all = bytes(STREAM);
  for (let cut = 0; cut <= all.length; cut++) {
    const { events } = parseChunks([all.slice(0, cut), all.slice(cut)]);
    assert.deepEqual(events, EXPECTED, `split at ${cut}`);
  }
});

withAndWithoutTextDecoder('split at every pair of positions (multi-byte text)', () => {
  const all = bytes('id: 1\ndata: 你😀好\r\n\r\ndata: é\n\n');
  const expected = [{ event: 'message', data: '你😀好', id: '1' }, { event: 'message', data: 'é', id: '1' }];
  for (let a = 0; a <= all.length; a++) {
    for (let b = a; b <= all.length; b++) {
      const { events } = parseChunks([all.slice(0, a), all.slice(a, b), all.slice(b)]);
      assert.deepEqual(events, expected, `split at ${a},${b}`);
    }
  }
});

withAndWithoutTextDecoder('seeded random splits, one byte at a time and merged', () => {
  const all = bytes(STREAM);
  const random = mulberry32(20261124);
  for (let round = 0; round < 300; round++) {
    const chunks = [];
    let at = 0;
    while (at < all.length) {
      const size = 1 + Math.floor(random() * (round % 3 === 0 ? 4 : 60));
      chunks.push(all.slice(at, at + size).buffer.slice(0)); // ArrayBuffers, as wx hands them over
      at += size;
    }
    assert.deepEqual(parseChunks(chunks).events, EXPECTED, `round ${round}`);
  }
  const oneByOne = Array.from(all, (b) => new Uint8Array([b]));
  assert.deepEqual(parseChunks(oneByOne).events, EXPECTED);
});

test('CR at the end of one chunk and LF at the start of the next are one line break', () => {
  const { events } = parseChunks([bytes('data: a\r'), bytes('\ndata: b\r'), bytes('\n\r'), bytes('\n')]);
  assert.deepEqual(events, [{ event: 'message', data: 'a\nb', id: '' }]);
});

test('comments and events without data are ignored; an id with NUL is ignored', () => {
  const { events } = parseChunks([bytes(':c\n\nevent: x\n\nid: a\u0000b\ndata: d\n\n')]);
  assert.deepEqual(events, [{ event: 'message', data: 'd', id: '' }]);
});

test('a BOM is stripped only at the very start, even when split', () => {
  const all = bytes('\ufeffdata: x\n\n\ufeffdata: y\n\n');
  for (let cut = 0; cut <= 4; cut++) {
    const { events } = parseChunks([all.slice(0, cut), all.slice(cut)]);
    assert.deepEqual(events.map((e) => e.data), ['x'], `cut ${cut}`); // a later BOM makes an unknown field
  }
});

test('feed rejects what is not bytes', () => {
  const { createParser } = load();
  assert.throws(() => createParser({ onEvent() {} }).feed('text'), TypeError);
});

test('decodeUtf8 agrees with the WHATWG decoder, valid and invalid bytes alike', () => {
  const { decodeUtf8 } = load();
  const samples = ['', 'ascii', '你好，世界', '😀🚀👩‍💻', 'é\u0000\uffff', '\u{10ffff}'];
  for (const s of samples) assert.equal(decodeUtf8(bytes(s)), s);
  const whatwg = new TextDecoder('utf-8');
  const random = mulberry32(7);
  const invalid = [[0xc0, 0x80], [0xe0, 0x80, 0x80], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xe4, 0xb8],
    [0xe4, 0xb8, 0x41], [0xff, 0xfe, 0x41], [0xf0, 0x9f, 0x98], [0x80, 0xbf]];
  for (let i = 0; i < 2000; i++) {
    const len = Math.floor(random() * 8);
    invalid.push(Array.from({ length: len }, () => Math.floor(random() * 256)));
  }
  for (const seq of invalid) {
    const u8 = new Uint8Array(seq);
    assert.equal(decodeUtf8(u8), whatwg.decode(u8), `bytes ${seq}`);
  }
});
