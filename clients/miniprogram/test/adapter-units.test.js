'use strict';
// What differs between the adapters, beyond the shared behavioural suite.
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');

const adapters = require(path.join(__dirname, '..', 'adapters.js'));
const sink = () => {
  const seen = [];
  return { seen, head: (s, h) => seen.push(['head', s, h]), bytes: (b) => seen.push(['bytes', b]),
    event: (e) => seen.push(['event', e]), end: (r) => seen.push(['end', r]), fail: (m, r) => seen.push(['fail', m, r]) };
};
const REQUEST = { url: 'https://x/v1/chat/stream', method: 'POST', header: { Authorization: 'Bearer t' }, data: { prompt: 'q' }, timeout: 5 };

test('detect(): wx first, then tt, my, uni; null without any', () => {
  const api = (name) => ({ name, request() { return {}; } });
  assert.equal(adapters.detect({ wx: api('wx'), tt: api('tt') }).name, 'wechat');
  assert.equal(adapters.detect({ tt: api('tt'), my: api('my') }).name, 'douyin');
  assert.equal(adapters.detect({ my: api('my'), uni: api('uni') }).name, 'alipay');
  assert.equal(adapters.detect({ uni: api('uni') }).name, 'uni-app');
  assert.equal(adapters.detect({}), null);
});

test('uni-app: success / fail / complete are always passed, so uni.request returns its task', () => {
  let options = null;
  const uni = { request(o) { options = o; return o.success || o.fail || o.complete ? { onChunkReceived() {}, abort() {} } : Promise.resolve(); } };
  const handle = adapters.uniApp(uni).stream(REQUEST, sink());
  assert.equal(handle.streaming, true);
  for (const fn of ['success', 'fail', 'complete']) assert.equal(typeof options[fn], 'function');
  assert.equal(options.enableChunked, true);
  assert.equal(options.responseType, 'arraybuffer');
});

test('Taro without onChunkReceived (NervJS/taro#14969): not streamed, later requests go native', () => {
  const nativeCalls = [];
  let rejections = 0;
  const Taro = {
    request() {
      const p = Promise.reject(new Error('request:fail'));
      const originalCatch = p.catch.bind(p);
      p.catch = (fn) => { rejections += 1; return originalCatch(fn); };
      p.abort = () => {};
      return p;
    },
    miniGlobal: { request(o) { nativeCalls.push(o); return { onChunkReceived() {}, onHeadersReceived() {}, abort() {} }; } },
  };
  const adapter = adapters.taro(Taro);
  assert.equal(adapter.stream(REQUEST, sink()).streaming, false, 'polled instead');
  assert.equal(rejections, 1, "the Promise's rejection is caught");
  assert.equal(nativeCalls.length, 0);
  assert.equal(adapter.stream(REQUEST, sink()).streaming, true);
  assert.equal(nativeCalls.length, 1, 'the second request uses Taro.miniGlobal.request');
});

test('Douyin: the EventSource gets url, method, header, data and the timeout as its second argument', () => {
  let args = null;
  const source = { onOpen() {}, onMessage() {}, onError() {}, onClose() {}, close() {} };
  const tt = { request() { return {}; }, createEventSource(...a) { args = a; return source; } };
  const adapter = adapters.douyin(tt);
  assert.equal(adapter.eventsOnly(), true);
  const handle = adapter.stream(REQUEST, sink());
  assert.deepEqual(args, [{ url: REQUEST.url, method: 'POST', header: REQUEST.header, data: REQUEST.data }, 5]);
  assert.equal(handle.streaming, true);
});

test('Alipay: headers (not header), the body as a JSON string, dataType text; an HTTP error via fail keeps its status', async () => {
  let options = null;
  const my = { request(o) { options = o; setImmediate(() => o.fail({ error: 19, errorMessage: 'http status error', status: 422, data: '{"code":"invalid_request"}' })); return { abort() {} }; } };
  const s = sink();
  const adapter = adapters.alipay(my);
  assert.equal(adapter.stream(REQUEST, s).streaming, false);
  assert.deepEqual(options.headers, REQUEST.header);
  assert.equal(options.header, undefined);
  assert.equal(options.data, '{"prompt":"q"}');
  assert.equal(options.dataType, 'text');
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(s.seen, [['fail', 'http status error', { statusCode: 422, data: '{"code":"invalid_request"}', headers: undefined }]]);
  await assert.rejects(adapter.request(REQUEST), { statusCode: 422 });
});
