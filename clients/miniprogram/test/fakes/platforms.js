'use strict';
// One fake per mini-program runtime, each modelled on what its documentation says the request
// callbacks deliver, all talking to the same fake server (./server.js) through an adversarial
// network: reads re-split at seeded random places (inside UTF-8 characters too) or merged,
// buffers reused after the callback, drops with or without a callback (iOS reports nothing).
//
// fault(request, index) -> null | { beforeHead: 'fail' | 'silent' } | { cutAfter: n, how: 'fail' | 'silent' }
// (index counts the streaming requests; cutAfter: the body is cut after its n-th event).

const { mulberry32, scheduler } = require('../helpers.js');

const encode = (s) => new Uint8Array(Buffer.from(s, 'utf8'));

/** The response plan as the network would deliver it: head, pieces, then how it ends. */
function plan(response, fault, random, maxSize) {
  const bytes = encode(response.body || '');
  let cutAt = bytes.length;
  if (fault && fault.cutAfter != null) {
    let events = 0;
    for (let i = 0; i + 1 < bytes.length; i++) {
      if (bytes[i] === 0x0a && bytes[i + 1] === 0x0a && ++events === fault.cutAfter) { cutAt = i + 2; break; }
    }
    // and a few bytes into the next event, inside a character if there is one
    cutAt = Math.min(bytes.length, cutAt + 5);
  }
  const pieces = [];
  for (let at = 0; at < cutAt;) {
    const size = 1 + Math.floor(random() * maxSize);
    pieces.push(bytes.slice(at, Math.min(cutAt, at + size)));
    at += size;
  }
  let end = 'complete';
  if (fault && fault.beforeHead) end = fault.beforeHead === 'fail' ? 'fail-before-head' : 'silent-before-head';
  else if (fault && fault.cutAfter != null) end = fault.how === 'silent' ? 'silent' : 'fail';
  return { status: response.status, headers: response.headers, bytes, pieces, end, delivered: response.delivered };
}

/** The server's answer, or a stand-in when the request was lost before it got there. */
function reach(server, fault, req) {
  if (fault && fault.beforeHead) return { status: 0, headers: {}, body: '', delivered() {} };
  const response = server.handle(req);
  return response.delivered ? response : { ...response, delivered() {} };
}

/** A chunk as the runtime hands it over: a fresh ArrayBuffer that the runtime overwrites afterwards. */
function handOver(piece, fn) {
  const buffer = new Uint8Array(piece.length);
  buffer.set(piece);
  fn(buffer.buffer);
  buffer.fill(0x3f); // reused for the next read
}

function isStream(url) { return /\/v1\/chat\/stream|\/stream(\?|$)/.test(url); }

/**
 * The wx.request family (wx, uni-app on mp-weixin, Taro, tt.request): `flavour` selects what
 * differs between them.
 *   wx:   onHeadersReceived({statusCode, header}); an error body arrives in success only.
 *   uni:  like wx, but a task only when success / fail / complete is passed (else a Promise),
 *         and the error body comes as chunks (success then has an empty body).
 *   taro: Taro.request returns a Promise carrying abort / onHeadersReceived / onChunkReceived;
 *         onHeadersReceived gives {header} only (no statusCode, per Taro's docs); the Promise
 *         rejects on failure.
 *   tt:   tt.request: no chunked mode documented, so no onChunkReceived; the whole body in success.
 */
function wxLike(server, { flavour = 'wx', seed = 1, maxSize = 7, fault = () => null } = {}) {
  const random = mulberry32(seed);
  const sched = scheduler();
  const calls = [];
  let streams = 0;
  const chunked = flavour !== 'tt';

  function request(options) {
    calls.push(options);
    if (flavour === 'uni' && !options.success && !options.fail && !options.complete) {
      return Promise.resolve(); // uni-app: no RequestTask without a callback (dcloudio/uni-app#4741)
    }
    const f = isStream(options.url) ? fault(options, streams++) : null;
    const p = plan(reach(server, f, { method: options.method || 'GET', url: options.url, headers: options.header,
      data: options.data }), f, random, maxSize);
    const task = { aborted: false, headers: [], chunks: [] };
    let settle = () => {};
    const result = flavour === 'taro' ? new Promise((resolve, reject) => { settle = (ok, res) => (ok ? resolve(res) : reject(res)); }) : task;
    const attach = (target) => {
      target.abort = () => {
        if (task.aborted || task.done) return;
        task.aborted = true;
        sched.later(() => finish(false, { errMsg: 'request:fail abort' }));
      };
      target.onHeadersReceived = (fn) => task.headers.push(fn);
      if (chunked) target.onChunkReceived = (fn) => task.chunks.push(fn);
    };
    attach(result);
    function finish(ok, res) {
      task.done = true;
      if (ok && options.success) options.success(res);
      if (!ok && options.fail) options.fail(res);
      if (options.complete) options.complete(res);
      settle(ok, res);
    }
    const steps = [];
    if (p.end === 'fail-before-head') steps.push(() => finish(false, { errMsg: 'request:fail network lost' }));
    if (!p.end.endsWith('before-head')) {
      steps.push(() => task.headers.forEach((fn) => fn(flavour === 'taro' ? { header: p.headers }
        : { statusCode: p.status, header: p.headers })));
      const errorInChunks = p.status !== 200 && flavour === 'uni';
      const streamed = chunked && options.enableChunked && (p.status === 200 || errorInChunks);
      if (streamed) for (const piece of p.pieces) steps.push(() => handOver(piece, (data) => task.chunks.forEach((fn) => fn({ data }))));
      if (p.end === 'fail') steps.push(() => finish(false, { errMsg: 'request:fail network lost' }));
      if (p.end === 'complete') {
        steps.push(() => {
          const data = streamed ? new ArrayBuffer(0)
            : options.responseType === 'arraybuffer' ? p.bytes.slice().buffer : Buffer.from(p.bytes).toString('utf8');
          finish(true, { statusCode: p.status, header: p.headers, data, cookies: [] });
          p.delivered();
        });
      }
    }
    sched.run(steps, () => task.aborted);
    return result;
  }
  return { request, calls, idle: sched.idle };
}

/**
 * tt.createEventSource(params, timeout) -> EventSourceTask: onOpen, onMessage({data, event,
 * lastEventId}), onError({errMsg}), onClose, close(). The runtime parses the stream itself
 * (standard rules: data lines joined with LF, comments invisible); an HTTP error shows only
 * as onError, its JSON body unseen. Also tt.request (for the adapter's fallback).
 */
function douyin(server, { seed = 1, maxSize = 7, fault = () => null, eventSource = true } = {}) {
  const plainTt = wxLike(server, { flavour: 'tt', seed: seed + 100, maxSize, fault });
  const random = mulberry32(seed);
  const sched = scheduler();
  const calls = plainTt.calls;
  let streams = 0;

  function createEventSource(params, timeout) {
    calls.push({ ...params, timeout, eventSource: true });
    const f = fault(params, streams++);
    const p = plan(reach(server, f, { method: params.method || 'GET', url: params.url, headers: params.header,
      data: params.data }), f, random, maxSize);
    const listeners = { open: [], message: [], error: [], close: [] };
    const source = { closed: false };
    ['Open', 'Message', 'Error', 'Close'].forEach((name) => {
      source[`on${name}`] = (fn) => listeners[name.toLowerCase()].push(fn);
    });
    source.close = () => { source.closed = true; };
    const emit = (name, arg) => listeners[name].forEach((fn) => fn(arg));
    const steps = [];
    if (p.end === 'fail-before-head' || p.status !== 200) steps.push(() => emit('error', { errMsg: 'eventsource: request failed' }));
    else if (p.end !== 'silent-before-head') {
      steps.push(() => emit('open', {}));
      // The runtime's own parser: whole events only, as a standard EventSource.
      const text = Buffer.from(Buffer.concat(p.pieces.map((x) => Buffer.from(x)))).toString('utf8');
      let lastEventId = '';
      for (const block of text.split('\n\n').slice(0, text.endsWith('\n\n') ? -1 : text.split('\n\n').length - 1)) {
        let event = 'message';
        const data = [];
        for (const line of block.split('\n')) {
          if (line.startsWith(':')) continue;
          const [, field, value] = /^([^:]*):? ?([\s\S]*)$/.exec(line);
          if (field === 'data') data.push(value);
          if (field === 'event') event = value;
          if (field === 'id') lastEventId = value;
        }
        const message = { data: data.join('\n'), event, lastEventId };
        if (data.length) steps.push(() => emit('message', message));
      }
      if (p.end === 'fail') steps.push(() => emit('error', { errMsg: 'eventsource: network lost' }));
      if (p.end === 'complete') steps.push(() => { emit('close', {}); p.delivered(); });
    }
    sched.run(steps, () => source.closed);
    return source;
  }

  const tt = { request: plainTt.request };
  if (eventSource) tt.createEventSource = createEventSource;
  return { tt, calls, idle: () => Promise.all([sched.idle(), plainTt.idle()]).then(() => undefined) };
}

/**
 * my.request (Alipay): options `headers`, `data` (a string), `dataType`, `timeout`; no chunked
 * mode: the whole body arrives at the end, in success({status, headers, data}); an HTTP error
 * comes through fail({error: 19, errorMessage, status, headers, data}); a network failure as
 * fail({error: 12, errorMessage}). A new turn's POST answers only once the turn has ended (it is
 * generated while the client polls GET /v1/requests/{id}).
 */
function alipay(server, { fault = () => null } = {}) {
  const sched = scheduler();
  const calls = [];
  let streams = 0;
  function request(options) {
    calls.push(options);
    const stream = isStream(options.url);
    const f = stream ? fault(options, streams++) : null;
    const req = { method: options.method || 'GET', url: options.url, headers: options.headers, data: options.data };
    const task = { aborted: false };
    task.abort = () => { task.aborted = true; };
    const answer = (res) => sched.later(() => {
      if (task.aborted) return;
      if (res.status >= 200 && res.status < 300) options.success && options.success(res);
      else options.fail && options.fail({ error: 19, errorMessage: 'http status error', ...res });
      options.complete && options.complete(res);
    });
    if (f && (f.beforeHead || f.cutAfter != null)) {
      if ((f.beforeHead || f.how) === 'fail') {
        sched.later(() => !task.aborted && options.fail && options.fail({ error: 12, errorMessage: '网络出错' }));
      }
      if (f.cutAfter != null) server.handle(req, { live: true }); // it reached the server, the answer was lost
      return task; // silent: nothing ever comes back
    }
    const response = server.handle(req, { live: stream });
    const deliver = (body) => answer({ status: response.status, headers: response.headers, data: body });
    if (response.deferred) server.onTurnEnd(response.requestId, () => deliver(response.later()));
    else deliver(response.body);
    return task;
  }
  return { my: { request }, calls, idle: sched.idle };
}

module.exports = { wxLike, douyin, alipay };
