'use strict';
// The byte-level SSE parser: every split position, every pair of positions, seeded random
// splits; each case runs twice, with TextDecoder and with globalThis.TextDecoder removed
// (as on devices), so the built-in UTF-8 decoder is exercised too.
const { describe, test } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { mulberry32, utf8, splitAt, randomSplit, withoutTextDecoder } = require('./helpers.js');

const PARSER = path.join(__dirname, '..', 'sse-parser.js');

/** A fresh copy of the module: nothing it decided at load time can leak between modes. */
function load() {
  delete require.cache[require.resolve(PARSER)];
  return require(PARSER);
}

function parse(chunks) {
  const { createParser } = load();
  const events = [];
  const retries = [];
  const parser = createParser({ onEvent: (e) => events.push(e), onRetry: (ms) => retries.push(ms) });
  for (const chunk of chunks) parser.feed(chunk);
  parser.end();
  return { events, retries };
}

// Chinese text and emoji (4 bytes in UTF-8) everywhere, merged events, LF / CRLF / CR line
// endings, comments, multi-line data, id / retry, a BOM, an event without data, an
// unterminated event at the end.
const STREAM =
  '\ufeff: stream open\n\n' +
  'event: meta\ndata: {"conversationId":"c1","messageId":"m1","model":"default"}\n\n' +
  'id: 3\ndata: {"delta":"你好，"}\n\n' +
  'id: 6\r\ndata: {"delta":"世界😀\\n"}\r\n\r\n' +
  ': ping\n\n' +
  'data: line one\rdata: line two 🚀 表情\r\r' +
  'retry: 2500\nid: 9\ndata:no-space\ndata:  two spaces\n\n' +
  'event: empty\n\n' +
  'event: reasoning\r\ndata: {"delta":"先想一想👩‍💻"}\r\n\r\n' +
  'data\ndata:\n\n' +
  'event: done\ndata: {"finishReason":"stop","usage":null}\n\n' +
  'data: [DONE]\n\n' +
  'data: never terminated 🚫';

const EXPECTED = [
  { event: 'meta', data: '{"conversationId":"c1","messageId":"m1","model":"default"}', id: '' },
  { event: 'message', data: '{"delta":"你好，"}', id: '3' },
  { event: 'message', data: '{"delta":"世界😀\\n"}', id: '6' },
  { event: 'message', data: 'line one\nline two 🚀 表情', id: '6' },
  { event: 'message', data: 'no-space\n two spaces', id: '9' },
  { event: 'reasoning', data: '{"delta":"先想一想👩‍💻"}', id: '9' },
  { event: 'message', data: '\n', id: '9' },
  { event: 'done', data: '{"finishReason":"stop","usage":null}', id: '9' },
  { event: 'message', data: '[DONE]', id: '9' },
];

// Short, but with a BOM, a 3-byte and a 4-byte character, CRLF, CR and LF.
const SHORT = '\ufeffid: 1\r\ndata: 你😀\r\r\ndata: é\n\n';
const SHORT_EXPECTED = [{ event: 'message', data: '你😀', id: '1' }, { event: 'message', data: 'é', id: '1' }];

const MODES = [
  ['with TextDecoder', (fn) => fn()],
  ['without TextDecoder (built-in decoder)', withoutTextDecoder],
];

for (const [mode, run] of MODES) {
  describe(`SSE parser ${mode}`, () => {
    test('the decoder in use matches the mode', () => run(() => {
      assert.equal(typeof TextDecoder === 'undefined', mode.startsWith('without'));
    }));

    test('the whole stream in one chunk', () => run(() => {
      const { events, retries } = parse([utf8(STREAM)]);
      assert.deepEqual(events, EXPECTED);
      assert.deepEqual(retries, [2500]);
    }));

    test('split in two at every byte position (ArrayBuffers, as wx hands them over)', () => run(() => {
      const all = utf8(STREAM);
      for (let cut = 0; cut <= all.length; cut++) {
        const chunks = splitAt(all, [cut]).map((c) => c.slice().buffer);
        const { events, retries } = parse(chunks);
        assert.deepEqual(events, EXPECTED, `split at ${cut}`);
        assert.deepEqual(retries, [2500], `split at ${cut}`);
      }
    }));

    test('split in three at every pair of byte positions', () => run(() => {
      const all = utf8(SHORT);
      let cases = 0;
      for (let a = 0; a <= all.length; a++) {
        for (let b = a; b <= all.length; b++) {
          assert.deepEqual(parse(splitAt(all, [a, b])).events, SHORT_EXPECTED, `split at ${a},${b}`);
          cases += 1;
        }
      }
      assert.ok(cases > 500);
    }));

    test('split at seeded random positions, from single bytes to merged events', () => run(() => {
      const all = utf8(STREAM);
      const random = mulberry32(20261124);
      for (let round = 0; round < 400; round++) {
        const maxSize = [1, 3, 7, 40, 300][round % 5];
        const { events } = parse(randomSplit(all, random, maxSize));
        assert.deepEqual(events, EXPECTED, `round ${round}`);
      }
    }));

    test('LF, CRLF and CR line endings give the same events, however split', () => run(() => {
      const logical = ['id: 7', 'event: note', 'data: 第一行', 'data: second 😀', '', ': comment', 'data: 末', '', ''];
      const expected = [{ event: 'note', data: '第一行\nsecond 😀', id: '7' }, { event: 'message', data: '末', id: '7' }];
      for (const eol of ['\n', '\r\n', '\r']) {
        const all = utf8(logical.join(eol));
        for (let cut = 0; cut <= all.length; cut++) {
          assert.deepEqual(parse(splitAt(all, [cut])).events, expected, `${JSON.stringify(eol)} split at ${cut}`);
        }
      }
    }));

    test('CR ending one chunk and LF starting the next are one line break', () => run(() => {
      const { events } = parse([utf8('data: a\r'), utf8('\ndata: b\r'), utf8('\n\r'), utf8('\n')]);
      assert.deepEqual(events, [{ event: 'message', data: 'a\nb', id: '' }]);
      // ...but CR, then CR LF, is two line breaks (here: the blank line ending the event).
      const two = parse([utf8('data: a\r'), utf8('\r\n')]).events;
      assert.deepEqual(two, [{ event: 'message', data: 'a', id: '' }]);
    }));

    test('a character cut across chunks is never garbled, at any byte', () => run(() => {
      const text = '中文😀🚀👩‍💻é';
      const all = utf8(`data: ${text}\n\n`);
      for (let size = 1; size <= 5; size++) {
        const chunks = [];
        for (let at = 0; at < all.length; at += size) chunks.push(all.slice(at, at + size));
        assert.deepEqual(parse(chunks).events, [{ event: 'message', data: text, id: '' }], `size ${size}`);
      }
    }));

    test('comments, events without data, ids with NUL, empty ids and invalid retry values', () => run(() => {
      const stream = ':c\n\nevent: x\n\nid: a\u0000b\ndata: d\n\nid: 5\ndata: e\n\nid\ndata: f\n\n' +
        'retry: 12a\nretry: -1\nretry:\nretry: 0\nretry: 1.5\nunknown: field\ndata: g\n\n';
      const { events, retries } = parse([utf8(stream)]);
      assert.deepEqual(events, [
        { event: 'message', data: 'd', id: '' },
        { event: 'message', data: 'e', id: '5' },
        { event: 'message', data: 'f', id: '' },
        { event: 'message', data: 'g', id: '' },
      ]);
      assert.deepEqual(retries, [0]);
    }));

    test('a BOM is stripped once, only at the very start, wherever the stream is split', () => run(() => {
      const all = utf8('\ufeffdata: x\n\n\ufeffdata: y\n\n');
      for (let a = 0; a <= 5; a++) {
        for (let b = a; b <= 5; b++) {
          // The second BOM makes an unknown field name: that line is ignored.
          assert.deepEqual(parse(splitAt(all, [a, b])).events.map((e) => e.data), ['x'], `split ${a},${b}`);
        }
      }
      assert.deepEqual(parse([utf8('\ufeff\ufeffdata: z\n\n')]).events, []);
      assert.deepEqual(parse([new Uint8Array([0xef, 0xbb]), utf8('data: w\n\n')]).events, []); // not a BOM
      assert.deepEqual(parse([new Uint8Array([0xef]), new Uint8Array([0xbb]), new Uint8Array([0xbf]),
        utf8('data: v\n\n')]).events.map((e) => e.data), ['v']);
    }));

    test('end() discards an unterminated event; what came before stays', () => run(() => {
      const { createParser } = load();
      const events = [];
      const parser = createParser({ onEvent: (e) => events.push(e) });
      parser.feed(utf8('data: one\n\ndata: two\ndata: three'));
      parser.end();
      assert.deepEqual(events.map((e) => e.data), ['one']);
      assert.equal(parser.lastEventId(), '');
    }));

    test('a Uint8Array view into a larger buffer is read from its offset', () => run(() => {
      const backing = utf8('XXXXdata: 视图\n\nYYYY');
      const view = backing.subarray(4, backing.length - 4);
      assert.deepEqual(parse([view]).events, [{ event: 'message', data: '视图', id: '' }]);
    }));

    test('a callback that throws loses no event and repeats none', () => run(() => {
      const { createParser } = load();
      const seen = [];
      const parser = createParser({
        onEvent: (e) => { seen.push(e.data); if (e.data === 'b') throw new Error('page bug'); },
      });
      assert.throws(() => parser.feed(utf8('data: a\n\ndata: b\n\ndata: c\n\ndata: d')), /page bug/);
      parser.feed(utf8('\n\n'));
      assert.deepEqual(seen, ['a', 'b', 'c', 'd']);
    }));

    test('a long line in tiny chunks is parsed in linear time', () => run(() => {
      const big = '长'.repeat(100000) + '😀';
      const all = utf8(`data: ${big}\n\n`);
      const chunks = [];
      for (let at = 0; at < all.length; at += 16) chunks.push(all.subarray(at, at + 16));
      const started = Date.now();
      const { events } = parse(chunks);
      assert.equal(events[0].data, big);
      assert.ok(Date.now() - started < 2000, 'took too long');
    }));
  });
}

test('the TextDecoder is used when present', () => {
  const Original = globalThis.TextDecoder;
  let calls = 0;
  globalThis.TextDecoder = class extends Original {
    decode(bytes, options) { calls += 1; return super.decode(bytes, options); }
  };
  try {
    assert.deepEqual(parse([utf8('data: 你好\n\n')]).events, [{ event: 'message', data: '你好', id: '' }]);
  } finally {
    globalThis.TextDecoder = Original;
  }
  assert.ok(calls > 0);
});

test('feed() rejects what is not bytes; createParser needs onEvent', () => {
  const { createParser } = load();
  assert.throws(() => createParser({ onEvent() {} }).feed('text'), TypeError);
  assert.throws(() => createParser({}), TypeError);
});

describe('decodeUtf8 (the fallback decoder)', () => {
  const { decodeUtf8 } = load();
  const nodeDecode = (bytes) => Buffer.from(bytes).toString('utf8');

  test('valid text: ASCII, CJK, emoji, astral planes, edges of each length', () => {
    const samples = ['', 'ascii', '你好，世界', '😀🚀👩‍💻🇨🇳', 'é\u0000\u007f\u0080\u07ff\u0800\uffff',
      '\ud7ff\ue000\u{10000}\u{10ffff}', '\ufeffBOM inside', 'a\nb\r\nc'];
    for (const s of samples) {
      assert.equal(decodeUtf8(utf8(s)), s);
      assert.equal(decodeUtf8(utf8(s)), nodeDecode(utf8(s)));
    }
  });

  test('5000 random strings agree with Buffer#toString', () => {
    const random = mulberry32(99);
    const ranges = [[0x20, 0x7e], [0x80, 0x7ff], [0x4e00, 0x9fff], [0xe000, 0xfffd], [0x1f300, 0x1faff],
      [0x10000, 0x10ffff]];
    for (let i = 0; i < 5000; i++) {
      let s = '';
      const length = Math.floor(random() * 20);
      for (let k = 0; k < length; k++) {
        const [lo, hi] = ranges[Math.floor(random() * ranges.length)];
        s += String.fromCodePoint(lo + Math.floor(random() * (hi - lo + 1)));
      }
      const bytes = utf8(s);
      assert.equal(decodeUtf8(bytes), s);
      assert.equal(decodeUtf8(bytes), nodeDecode(bytes));
    }
  });

  test('invalid bytes become U+FFFD exactly as Buffer#toString (and WHATWG) do', () => {
    const invalid = [
      [0xc0, 0x80], [0xc1, 0xbf], [0xe0, 0x80, 0x80], [0xe0, 0x9f, 0xbf], [0xed, 0xa0, 0x80], [0xed, 0xbf, 0xbf],
      [0xf0, 0x8f, 0xbf, 0xbf], [0xf4, 0x90, 0x80, 0x80], [0xf5, 0x80], [0xff], [0xfe, 0x41], [0x80], [0xbf, 0x80],
      [0xe4, 0xb8], [0xe4, 0xb8, 0x41], [0xf0, 0x9f, 0x98], [0xf0, 0x9f, 0x98, 0x41], [0xf0, 0x9f, 0x41, 0x80],
      [0x41, 0xe4], [0xe4, 0xe4, 0xb8, 0xad], [0xc3], [0xc3, 0xc3, 0xa9], [0xed, 0x9f, 0xbf], [0xf4, 0x8f, 0xbf, 0xbf],
    ];
    const random = mulberry32(7);
    for (let i = 0; i < 20000; i++) {
      const length = Math.floor(random() * 10);
      invalid.push(Array.from({ length }, () => {
        const r = random(); // favour bytes that start or continue sequences
        return r < 0.2 ? Math.floor(random() * 0x80) : r < 0.6 ? 0x80 + Math.floor(random() * 0x40)
          : 0xc0 + Math.floor(random() * 0x40);
      }));
    }
    const whatwg = new TextDecoder('utf-8');
    for (const seq of invalid) {
      const bytes = new Uint8Array(seq);
      const expected = nodeDecode(bytes);
      assert.equal(decodeUtf8(bytes), expected, `bytes ${seq.map((b) => b.toString(16))}`);
      assert.equal(whatwg.decode(bytes), expected);
    }
  });

  test('long input (beyond String.fromCharCode argument limits)', () => {
    const s = '😀中a'.repeat(50000);
    assert.equal(decodeUtf8(utf8(s)), s);
  });
});
