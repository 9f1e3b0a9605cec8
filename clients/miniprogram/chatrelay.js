/**
 * chatrelay client for mini-programs: WeChat (wx.request with enableChunked), uni-app, Taro,
 * Douyin (tt.createEventSource / tt.request) and runtimes without a chunked mode such as
 * Alipay (my.request: the answer is polled while the request runs). No dependencies besides
 * ./sse-parser.js and ./adapters.js; plain ES2017.
 *
 * streamChat() posts the question once (with a requestId, so that a retry is idempotent and
 * a stop can name the turn before its id is known) and parses the SSE answer (docs/api.md)
 * from whatever pieces the runtime hands over. Exactly one terminal callback, onDone or
 * onError, is called, once; nothing is called after it.
 */
'use strict';

var sse = require('./sse-parser.js');
var adapters = require('./adapters.js');

function noop() {}

/** The adapter for the options: `adapter`, else `wx` (any wx-like object), else the runtime's globals. */
function resolveAdapter(options) {
  if (options && options.adapter) return options.adapter;
  if (options && options.wx) return adapters.wechat(options.wx);
  return adapters.detect();
}

function baseUrl(url) {
  if (!url) throw new Error('chatrelay: `url` (the server base URL) is required');
  return String(url).replace(/\/+$/, '');
}

function isBytes(data) {
  return data instanceof Uint8Array || data instanceof ArrayBuffer ||
    Object.prototype.toString.call(data) === '[object ArrayBuffer]';
}

function bytesToText(data) {
  var bytes = data instanceof Uint8Array ? data : new Uint8Array(data);
  return typeof TextDecoder !== 'undefined' ? new TextDecoder('utf-8').decode(bytes) : sse.decodeUtf8(bytes);
}

/** The first `n` code points of `s` (offsets count code points; JS strings, UTF-16 units). */
function firstCodePoints(s, n) {
  var i = 0;
  for (var seen = 0; seen < n && i < s.length; seen++) {
    var unit = s.charCodeAt(i);
    i += unit >= 0xd800 && unit <= 0xdbff && i + 1 < s.length ? 2 : 1;
  }
  return s.slice(0, i);
}

/** A JSON answer body as wx hands it over (object, string or ArrayBuffer) -> object or null. */
function parseBody(data) {
  if (data == null || data === '') return null;
  if (typeof data === 'object' && !isBytes(data)) return data;
  try { return JSON.parse(typeof data === 'string' ? data : bytesToText(data)); } catch (e) { return null; }
}

/** The server's `{code, message, field?}` error body -> the error passed to onError / rejected. */
function httpError(status, data) {
  var body = parseBody(data);
  var error = {
    code: (body && body.code) || 'http_' + status,
    message: (body && body.message) || 'HTTP ' + status,
  };
  if (status) error.status = status;
  if (body && body.field) error.field = body.field;
  return error;
}

function header(headers, name) {
  if (!headers) return undefined;
  var wanted = name.toLowerCase();
  for (var key in headers) {
    if (Object.prototype.hasOwnProperty.call(headers, key) && key.toLowerCase() === wanted) return headers[key];
  }
  return undefined;
}

function concatBytes(list) {
  var total = 0;
  list.forEach(function (b) { total += b.length; });
  var out = new Uint8Array(total);
  var at = 0;
  list.forEach(function (b) { out.set(b, at); at += b.length; });
  return out;
}

function safeCall(fn, args) {
  try {
    fn.apply(null, args);
  } catch (e) {
    // A bug in page code must not derail the stream; make it visible in the console.
    if (typeof console !== 'undefined') console.error('chatrelay: callback threw', e);
  }
}

var REQUEST_ID = /^[0-9A-Za-z_-]{1,64}$/;

/** A fresh request id, `mp-<base36 time>-<random>`, only [0-9A-Za-z_-] (the server's id rule). */
function newRequestId() {
  var random = '';
  for (var i = 0; i < 12; i++) random += Math.floor(Math.random() * 36).toString(36);
  return 'mp-' + Date.now().toString(36) + '-' + random;
}

/** Code points of a JS string (offsets count code points). */
function codePoints(s) {
  var n = 0;
  for (var i = 0; i < s.length; i++) {
    var unit = s.charCodeAt(i);
    if (unit >= 0xd800 && unit <= 0xdbff && i + 1 < s.length) {
      var next = s.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) i += 1;
    }
    n += 1;
  }
  return n;
}

function isWhitespaceByte(b) { return b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d; }

function toUint8(data) {
  if (typeof data === 'string') return new Uint8Array(utf8Bytes(data));
  if (data instanceof Uint8Array) return data;
  if (isBytes(data)) return new Uint8Array(data);
  if (data && data.buffer && typeof data.byteLength === 'number') {
    return new Uint8Array(data.buffer, data.byteOffset || 0, data.byteLength);
  }
  return null;
}

/** `s` without its first `n` code points. */
function dropCodePoints(s, n) {
  return s.slice(firstCodePoints(s, n).length);
}

/**
 * streamChat(options) -> { stop(), requestId }
 *
 * options:
 *   url            server base URL, e.g. 'https://api.example.com'
 *   token          bearer token
 *   prompt         the question; conversationId?, model?, terminal?, window? as in docs/api.md
 *   requestId      the turn's idempotency key ([0-9A-Za-z_-], at most 64); generated
 *                  (`mp-<base36 time>-<random>`) when not given. Posting the same requestId again
 *                  replays the stored turn instead of asking the model twice; handle.requestId
 *                  tells the one in use (pass it back to retry a cut answer idempotently)
 *   format         'json' (default) or 'text' (the answer as raw data lines, everything else in
 *                  comments; CR, LF and CRLF reach onDelta exactly). Where the runtime parses SSE
 *                  itself (Douyin's EventSource) the JSON format is used on the wire whatever this says
 *   onMeta({conversationId, messageId, model})
 *   onDelta(delta, textSoFar, offset)   offset: the answer's length in code points so far; text
 *                  replayed after a retry or resume is never delivered twice
 *   onReasoning(delta, reasoningSoFar)  reasoning models only; not part of the answer
 *   onDone({finishReason, usage, text})
 *   onError({code, message, status?, field?, offset?, finishReason?, text})   text: the partial
 *                  answer; for `answer_blocked` (content check) it is already cut at `offset`
 *   onHeaders({statusCode, header})     when the runtime reports the response head
 *   idleTimeoutMs  30000: no byte for this long = a dead connection (iOS may call neither fail
 *                  nor complete when the network drops); the server pings every 15 s
 *   connectTimeoutMs  10000: no response head for this long = the request was lost: post the same
 *                  requestId again (counted in maxResumes), as long as the server has been silent for
 *                  less than idleTimeoutMs in all (then onError client_idle_timeout). Used only when
 *                  shorter than idleTimeoutMs
 *   requestTimeoutMs  the runtime's `timeout` for the whole answer (default 600000)
 *   maxResumes     3: after a drop, continue at most this many times (0: never): with
 *                  GET /v1/messages/{id}/stream?after=<offset> once the message id is known, else
 *                  (a drop before the response head) by posting the same requestId again
 *   endGraceMs     100: how long to wait for late chunks after the response ended without `done`
 *   pollIntervalMs 1000: where the runtime cannot stream (Alipay, or a task without
 *                  onChunkReceived), GET /v1/requests/{requestId} this often while the POST runs
 *   stopUrl        URL (or function(messageId) -> URL) of the stop call once the message id is
 *                  known; default `${url}/v1/messages/${messageId}/stop`
 *   requestStopUrl URL (or function(requestId) -> URL) of the stop call before it is known;
 *                  default `${url}/v1/requests/${requestId}/stop`
 *   adapter        a platform adapter from ./adapters.js (wechat, uniApp, taro, douyin, alipay)
 *   wx             or a wx-like object (wx, uni, Taro) for the WeChat adapter; default: the
 *                  runtime's global (wx, tt, my, uni, in that order)
 *   setTimeout / clearTimeout   timer functions (tests)
 *
 * stop(): aborts the request, tells the server (POST /v1/messages/{id}/stop, or
 * /v1/requests/{requestId}/stop while the message id is not known yet: the turn is then stopped,
 * or stored `stopped` without reaching the model) and reports onDone({finishReason: 'stopped'}).
 * It returns a Promise of the stop call's answer (null when it failed or nothing was running).
 */
function streamChat(options) {
  var adapter = resolveAdapter(options);
  if (!adapter || typeof adapter.stream !== 'function') {
    throw new Error('chatrelay: no request API; pass `wx` (or uni / Taro) or an `adapter` in the options');
  }
  var base = baseUrl(options.url);
  var wanted = options.format === 'text' ? 'text' : 'json';
  var requestId = options.requestId != null && options.requestId !== '' ? String(options.requestId) : newRequestId();
  var auth = { Authorization: 'Bearer ' + options.token, 'Content-Type': 'application/json' };
  var idleTimeoutMs = options.idleTimeoutMs > 0 ? options.idleTimeoutMs : 30000;
  var connectTimeoutMs = options.connectTimeoutMs > 0 ? options.connectTimeoutMs : 10000;
  var requestTimeoutMs = options.requestTimeoutMs > 0 ? options.requestTimeoutMs : 600000;
  var maxResumes = options.maxResumes >= 0 ? options.maxResumes : 3;
  var endGraceMs = options.endGraceMs >= 0 ? options.endGraceMs : 100;
  var pollIntervalMs = options.pollIntervalMs > 0 ? options.pollIntervalMs : 1000;
  var setTimer = options.setTimeout || setTimeout;
  var clearTimer = options.clearTimeout || clearTimeout;
  var onMeta = options.onMeta || noop;
  var onDelta = options.onDelta || noop;
  var onReasoning = options.onReasoning || noop;
  var onDone = options.onDone || noop;
  var onError = options.onError || noop;
  var onHeaders = options.onHeaders || noop;

  var body = { prompt: options.prompt, requestId: requestId };
  ['conversationId', 'model', 'terminal', 'window'].forEach(function (key) {
    if (options[key] != null && options[key] !== '') body[key] = options[key];
  });

  var text = '';
  var reasoning = '';
  var offset = 0;          // the server's offset after the last answer event: where a resume starts
  var meta = null;         // reported once
  var pendingMeta = null;  // format=text: ids from the response headers, reported if no `: meta` comes
  var messageId = '';      // from meta, the X-Message-Id header or a polled turn: what stop() needs
  var failure = null;      // an `error` event: reported at `done` or when the stream ends
  var ended = false;
  var attempt = 0;         // the live request; callbacks of older ones are ignored
  var task = null;
  var current = null;      // the live request's state
  var resumes = 0;
  var idleTimer = null;
  var headTimer = null;
  var graceTimer = null;
  var silentMs = 0;        // time without any response head, over re-posts (connectTimeoutMs)
  var polling = false;     // the runtime cannot stream: the turn is polled by request id
  var pollTimer = null;
  var pollMisses = 0;
  var pollFailures = 0;
  var postDead = false;    // polling: the request failed or ended without `done`

  function clear(id) { if (id !== null) clearTimer(id); return null; }

  function abortTask() {
    attempt += 1;          // whatever the old request still reports is ignored from now on
    headTimer = clear(headTimer);
    graceTimer = clear(graceTimer);
    var old = task;
    task = null;
    current = null;
    if (old && typeof old.abort === 'function') {
      try { old.abort(); } catch (e) { /* already finished */ }
    }
  }

  function end() {
    abortTask();
    ended = true;
    idleTimer = clear(idleTimer);
    pollTimer = clear(pollTimer);
  }

  function reportMeta(value) {
    if (value.messageId) messageId = value.messageId;
    if (meta) return;
    meta = value;
    pendingMeta = null;
    safeCall(onMeta, [value]);
  }

  function flushMeta() { if (!meta && pendingMeta) reportMeta(pendingMeta); }

  function finishDone(payload) {
    if (ended) return;
    flushMeta();
    end();
    safeCall(onDone, [payload]);
  }

  function finishError(error) {
    if (ended) return;
    flushMeta();
    end();
    error.text = text;
    safeCall(onError, [error]);
  }

  /** The connection ended or died before the answer did: resume, re-post or report. */
  function dropped(code, message) {
    if (ended) return;
    // Without a message id the same requestId is posted again (the server replays the turn): when
    // nothing came back at all, or when part of the stream did (the text is not delivered twice).
    var repost = !current || !current.alive || current.gotBytes;
    abortTask();
    idleTimer = clear(idleTimer);
    if (failure) { finishError(failure); return; }
    if (resumes < maxResumes && (messageId || repost)) {
      resumes += 1;
      open(messageId ? 'resume' : 'post');
      return;
    }
    finishError({ code: code, message: message });
  }

  function armIdle() {
    idleTimer = clear(idleTimer);
    idleTimer = setTimer(function () {
      idleTimer = null;
      if (ended || !current || !current.streaming) return;
      if (current.alive) { dropped('client_idle_timeout', 'no data for ' + idleTimeoutMs + ' ms'); return; }
      // Not even a response head, over every re-post: the server is out of reach.
      finishError({ code: 'client_idle_timeout', message: 'no data for ' + idleTimeoutMs + ' ms' });
    }, idleTimeoutMs);
  }

  /** No response head in connectTimeoutMs: the request was lost on the way; post it again. */
  function armHead() {
    headTimer = clear(headTimer);
    if (connectTimeoutMs >= idleTimeoutMs || silentMs + connectTimeoutMs >= idleTimeoutMs) return;
    headTimer = setTimer(function () {
      headTimer = null;
      if (ended || !current || current.alive) return;
      silentMs += connectTimeoutMs;
      if (resumes >= maxResumes) return; // the idle watchdog reports in the end
      resumes += 1;
      abortTask();
      open(messageId ? 'resume' : 'post');
    }, connectTimeoutMs);
  }

  function parseJson(data) {
    try { return JSON.parse(data); } catch (e) { return undefined; }
  }

  /** An answer event: `id` is the answer's length after it, so text already delivered is dropped. */
  function deliver(delta, id) {
    if (!isNaN(id)) {
      if (id <= offset) return; // replayed after a retry or a resume
      var start = id - codePoints(delta);
      if (start < offset) delta = dropCodePoints(delta, offset - start);
      offset = id;
      if (!delta) return;
    }
    text += delta;
    flushMeta();
    safeCall(onDelta, [delta, text, offset]);
  }

  /** meta / error / done, from an event (format=json) or a comment (format=text). */
  function control(name, payload) {
    if (name === 'meta') {
      reportMeta({ conversationId: payload.conversationId, messageId: payload.messageId, model: payload.model });
    } else if (name === 'error') {
      failure = { code: payload.code || 'internal_error', message: payload.message || '' };
      if (payload.code === 'answer_blocked' && typeof payload.offset === 'number') {
        // The content check refused text already shown: keep only the part before the cut.
        text = firstCodePoints(text, payload.offset);
        offset = Math.min(offset, payload.offset);
        failure.offset = payload.offset;
      }
    } else if (name === 'done') {
      if (failure) {
        failure.finishReason = payload.finishReason;
        failure.usage = payload.usage || null;
        finishError(failure);
      } else {
        finishDone({ finishReason: payload.finishReason, usage: payload.usage || null, text: text });
      }
    }
  }

  function handleEvent(ev, wire) {
    if (ev.event === 'message') {
      if (ev.data === '[DONE]') {
        // `done` normally came first; without it the answer ended all the same.
        if (failure) finishError(failure);
        else finishDone({ finishReason: null, usage: null, text: text });
        return;
      }
      var delta;
      if (wire === 'text') {
        delta = typeof ev.rawData === 'string' ? ev.rawData : ev.data;
      } else {
        var parsed = parseJson(ev.data);
        if (!parsed || typeof parsed.delta !== 'string') { badResponse(ev); return; }
        delta = parsed.delta;
      }
      deliver(delta, parseInt(ev.id, 10));
      return;
    }
    var payload = parseJson(ev.data);
    if (!payload || typeof payload !== 'object') {
      if (ev.event === 'meta' || ev.event === 'done' || ev.event === 'error') badResponse(ev);
      return;
    }
    if (ev.event === 'reasoning') {
      var piece = typeof payload.delta === 'string' ? payload.delta : '';
      reasoning += piece;
      safeCall(onReasoning, [piece, reasoning]);
      return;
    }
    control(ev.event, payload); // other event names: ignored (forward compatible)
  }

  /** format=text: `: meta {...}`, `: error {...}`, `: done {...}`; any other comment is ignored. */
  function handleComment(comment) {
    var match = /^(meta|error|done)\s+(\{[\s\S]*\})\s*$/.exec(comment);
    if (!match) return;
    var payload = parseJson(match[2]);
    if (payload && typeof payload === 'object') control(match[1], payload);
  }

  function badResponse(ev) {
    var shown = String(ev.data).slice(0, 200);
    finishError({ code: 'bad_response', message: 'unexpected `' + ev.event + '` event: ' + shown });
  }

  /** A polled turn (GET /v1/requests/{id}): new text as deltas; an ended turn ends the stream. */
  function applyTurn(turn) {
    if (turn.messageId) messageId = turn.messageId;
    if (!meta) reportMeta({ conversationId: turn.conversationId, messageId: turn.messageId, model: turn.model });
    var answer = typeof turn.answer === 'string' ? turn.answer : '';
    var length = codePoints(answer);
    if (length > offset) {
      var piece = dropCodePoints(answer, offset);
      offset = length;
      text += piece;
      safeCall(onDelta, [piece, text, offset]);
    }
    if (!turn.status || turn.status === 'streaming') return;
    text = answer; // the stored answer is the final word (a content-check cut included)
    if (turn.errorCode) {
      var error = { code: turn.errorCode, message: turn.errorMessage || '', finishReason: turn.finishReason,
        usage: turn.usage || null };
      if (turn.errorCode === 'answer_blocked') error.offset = length;
      finishError(error);
    } else {
      finishDone({ finishReason: turn.finishReason || null, usage: turn.usage || null, text: text });
    }
  }

  function startPolling() {
    idleTimer = clear(idleTimer);
    headTimer = clear(headTimer);
    postDead = false;
    pollMisses = 0;
    if (polling) return;
    polling = true;
    schedulePoll();
  }

  function schedulePoll() {
    pollTimer = clear(pollTimer);
    if (!ended) pollTimer = setTimer(poll, pollIntervalMs);
  }

  function poll() {
    pollTimer = null;
    if (ended) return;
    var request = { url: base + '/v1/requests/' + encodeURIComponent(requestId), method: 'GET', header: auth };
    adapter.request(request).then(polled, polled);
  }

  function polled(res) {
    if (ended) return;
    if (!res || !res.statusCode) { // the poll itself failed: the network is down
      pollFailures += 1;
      if (pollFailures * pollIntervalMs >= idleTimeoutMs) {
        finishError({ code: 'network_error', message: (res && res.errMsg) || 'request failed' });
        return;
      }
      schedulePoll();
      return;
    }
    pollFailures = 0;
    if (res.statusCode === 404) {
      // Not stored yet: the POST is on its way, or it was lost (then post the same requestId again).
      pollMisses += 1;
      if ((postDead && pollMisses >= 3) || pollMisses * pollIntervalMs >= connectTimeoutMs) {
        if (resumes >= maxResumes) {
          finishError({ code: 'network_error', message: 'the question did not reach the server' });
          return;
        }
        resumes += 1;
        abortTask();
        open('post');
      }
      schedulePoll();
      return;
    }
    if (res.statusCode !== 200) { finishError(httpError(res.statusCode, res.data)); return; }
    var turn = parseBody(res.data);
    if (turn && typeof turn === 'object') applyTurn(turn);
    schedulePoll();
  }

  function open(kind) {
    attempt += 1;
    var mine = attempt;
    var live = function () { return mine === attempt && !ended; };
    var wire = adapter.eventsOnly && adapter.eventsOnly() ? 'json' : wanted;
    var state = { kind: kind, alive: false, streaming: true, status: 0, gotBytes: false, closing: false,
      sniff: 'unknown', held: [], errorBytes: [] };
    current = state;
    var parser = sse.createParser({
      exactLineBreaks: true,
      onEvent: function (ev) { if (live()) handleEvent(ev, wire); },
      onComment: function (comment) { if (live()) handleComment(comment); },
    });

    function markAlive() {
      if (!state.alive) {
        state.alive = true;
        silentMs = 0;
        headTimer = clear(headTimer);
      }
      if (state.streaming && !state.closing) armIdle();
    }

    function headersSeen(statusCode, headers) {
      if (statusCode) state.status = statusCode;
      var id = header(headers, 'X-Message-Id');
      if (!id) return;
      messageId = id;
      if (wire === 'text' && !meta && (state.status === 200 || !state.status)) {
        pendingMeta = { conversationId: header(headers, 'X-Conversation-Id'), messageId: id, model: undefined };
      }
    }

    /**
     * Bytes of the body. A JSON error body ({"code", "message", "field"?}) may come as chunks
     * even where no response head told its status: a body whose first non-blank byte is `{` is
     * kept aside as such (an event stream never starts so).
     */
    function feed(data) {
      var bytes = toUint8(data);
      if (!bytes || !bytes.length) return;
      if ((state.status && state.status !== 200) || state.sniff === 'json') {
        state.errorBytes.push(bytes.slice(0)); // copied: the runtime may reuse the buffer
        return;
      }
      if (state.sniff === 'unknown') {
        var k = 0;
        while (k < bytes.length && isWhitespaceByte(bytes[k])) k += 1;
        state.held.push(bytes.slice(0));
        if (k === bytes.length) return;
        var held = state.held;
        state.held = [];
        if (bytes[k] === 0x7b) { state.sniff = 'json'; state.errorBytes = held; return; }
        state.sniff = 'sse';
        for (var h = 0; h < held.length; h++) parser.feed(held[h]);
        return;
      }
      parser.feed(bytes);
    }

    function errorBody(data) {
      if (data != null && data !== '' && !(isBytes(data) && !data.byteLength)) return data;
      return state.errorBytes.length ? concatBytes(state.errorBytes) : data;
    }

    /** A JSON error body that came as chunks, whatever the status said (or if it said nothing). */
    function chunkedError(status) {
      if (state.sniff !== 'json') return null;
      var bodyBytes = concatBytes(state.errorBytes);
      var parsed = parseBody(bodyBytes);
      return parsed && parsed.code ? httpError(status, bodyBytes) : null;
    }

    /** The response is over but no `done` came (yet): give late chunks endGraceMs. */
    function closed() {
      if (state.closing) return;
      state.closing = true;
      idleTimer = clear(idleTimer);
      headTimer = clear(headTimer);
      graceTimer = setTimer(function () {
        graceTimer = null;
        if (!live()) return;
        parser.end();
        if (state.streaming) { dropped('stream_ended', 'the connection closed before the answer was complete'); return; }
        postDead = true; // polling goes on and tells how the turn ended
        abortTask();
      }, endGraceMs);
    }

    var sink = {
      head: function (statusCode, headers) {
        if (!live()) return;
        markAlive();
        headersSeen(statusCode, headers);
        safeCall(onHeaders, [{ statusCode: statusCode, header: headers }]);
      },
      bytes: function (data) {
        if (!live()) return;
        markAlive();
        state.gotBytes = true;
        if (data != null) feed(data);
      },
      event: function (ev) {
        if (!live()) return;
        markAlive();
        state.gotBytes = true;
        handleEvent(ev, 'json');
      },
      end: function (res) {
        if (!live()) return;
        var code = res && res.statusCode;
        if (code && code !== 200) { finishError(httpError(code, errorBody(res.data))); return; }
        var refused = chunkedError(code);
        if (refused) { finishError(refused); return; }
        headersSeen(200, res && res.headers);
        var data = res && res.data;
        if (!state.gotBytes && data != null && (isBytes(data) ? data.byteLength : String(data).length)) {
          // No chunk at all (a runtime without chunked transfer): the whole stream is here.
          feed(data);
          var late = chunkedError(code);
          if (late) { finishError(late); return; }
        }
        if (live()) closed();
      },
      fail: function (errMsg, res) {
        if (!live()) return;
        if (res && res.statusCode && res.statusCode !== 200) { finishError(httpError(res.statusCode, res.data)); return; }
        var refused = chunkedError(state.status || undefined);
        if (refused) { finishError(refused); return; }
        if (!state.streaming) { postDead = true; abortTask(); return; } // polling goes on
        dropped('network_error', errMsg || 'request failed');
      },
    };

    var request;
    var query = [];
    if (kind === 'resume') query.push('after=' + offset);
    if (wire === 'text') query.push('format=text');
    var qs = query.length ? '?' + query.join('&') : '';
    if (kind === 'resume') {
      request = { url: base + '/v1/messages/' + encodeURIComponent(messageId) + '/stream' + qs, method: 'GET' };
    } else {
      request = { url: base + '/v1/chat/stream' + qs, method: 'POST', data: body };
    }
    request.header = auth;
    request.timeout = requestTimeoutMs;

    var handle = adapter.stream(request, sink);
    if (mine !== attempt) { // finished (or replaced) while starting
      if (handle && typeof handle.abort === 'function') handle.abort();
      return;
    }
    task = handle;
    state.streaming = !(handle && handle.streaming === false);
    if (!state.streaming) { startPolling(); return; }
    if (!state.alive) armHead();
    if (idleTimer === null) armIdle();
  }

  open('post');

  return {
    requestId: requestId,
    stop: function () {
      if (ended) return Promise.resolve(null);
      var id = messageId;
      finishDone({ finishReason: 'stopped', usage: null, text: text });
      var target;
      if (id) {
        target = typeof options.stopUrl === 'function' ? options.stopUrl(id)
          : options.stopUrl || base + '/v1/messages/' + encodeURIComponent(id) + '/stop';
      } else {
        // The response head is still on its way: name the turn by its request id.
        target = typeof options.requestStopUrl === 'function' ? options.requestStopUrl(requestId)
          : options.requestStopUrl || base + '/v1/requests/' + encodeURIComponent(requestId) + '/stop';
      }
      return send(adapter, { url: target, method: 'POST', header: auth, data: {} }).catch(function (error) {
        if (typeof console !== 'undefined') console.warn('chatrelay: stop call failed', error);
        return null;
      });
    },
  };
}

/** A JS string -> its UTF-8 bytes (for runtimes that hand over text instead of ArrayBuffers). */
function utf8Bytes(str) {
  var out = [];
  for (var i = 0; i < str.length; i++) {
    var c = str.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < str.length) {
      var d = str.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) { c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00); i += 1; }
    }
    if (c >= 0xd800 && c <= 0xdfff) c = 0xfffd; // a lone surrogate
    if (c < 0x80) out.push(c);
    else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 63));
    else if (c < 0x10000) out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
    else out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
  }
  return out;
}

/** A request through the adapter as a Promise of the JSON answer; rejects with {code, message, status?}. */
function send(adapter, request) {
  return adapter.request(request).then(function (res) {
    if (res.statusCode >= 200 && res.statusCode < 300) return parseBody(res.data);
    throw httpError(res.statusCode, res.data);
  }, function (err) {
    if (err && err.statusCode) throw httpError(err.statusCode, err.data);
    throw { code: 'network_error', message: (err && err.errMsg) || 'request failed' };
  });
}

/** options: { url, token?, wx? | adapter? } */
function call(options, method, path, data) {
  var adapter = resolveAdapter(options);
  if (!adapter) return Promise.reject({ code: 'no_wx', message: 'pass `wx` (or uni / Taro) or an `adapter` in the options' });
  var headers = { 'Content-Type': 'application/json' };
  if (options.token) headers.Authorization = 'Bearer ' + options.token;
  var request = { url: baseUrl(options.url) + path, method: method, header: headers };
  if (data !== undefined) request.data = data;
  return send(adapter, request);
}

function query(params) {
  var parts = [];
  Object.keys(params || {}).forEach(function (key) {
    var value = params[key];
    if (value != null && value !== '') parts.push(encodeURIComponent(key) + '=' + encodeURIComponent(value));
  });
  return parts.length ? '?' + parts.join('&') : '';
}

var enc = encodeURIComponent;

/** POST /v1/auth/dev (dev servers only) -> {token, tokenType, expiresIn} */
function devLogin(options, userId) { return call(options, 'POST', '/v1/auth/dev', { userId: userId }); }
/** GET /v1/conversations -> {items, nextCursor}; params: {limit, cursor} */
function listConversations(options, params) { return call(options, 'GET', '/v1/conversations' + query(params)); }
/** GET /v1/conversations/{id}/messages -> {items, nextCursor}, oldest first; params: {limit, cursor} */
function listMessages(options, conversationId, params) {
  return call(options, 'GET', '/v1/conversations/' + enc(conversationId) + '/messages' + query(params));
}
/** GET /v1/messages/{id} -> Turn */
function getMessage(options, messageId) { return call(options, 'GET', '/v1/messages/' + enc(messageId)); }
/** GET /v1/requests/{requestId} -> Turn (404 not_found until the turn is stored) */
function getRequest(options, requestId) { return call(options, 'GET', '/v1/requests/' + enc(requestId)); }
/** PUT /v1/messages/{id}/feedback, useful: 1 (like), -1 (dislike), 0 (none) -> {messageId, useful} */
function setFeedback(options, messageId, useful) {
  return call(options, 'PUT', '/v1/messages/' + enc(messageId) + '/feedback', { useful: useful });
}
/** DELETE /v1/conversations/{id} -> null (204) */
function deleteConversation(options, conversationId) {
  return call(options, 'DELETE', '/v1/conversations/' + enc(conversationId));
}
/** POST /v1/messages/{id}/stop -> {messageId, status, stopRequested} */
function stopMessage(options, messageId) {
  return call(options, 'POST', '/v1/messages/' + enc(messageId) + '/stop', {});
}
/** POST /v1/requests/{requestId}/stop -> {messageId, status, stopRequested}; works before the turn exists */
function stopRequest(options, requestId) {
  return call(options, 'POST', '/v1/requests/' + enc(requestId) + '/stop', {});
}

/** The same functions with { url, token, wx | adapter } bound once. */
function createClient(config) {
  function withConfig(extra) { return Object.assign({}, config, extra); }
  return {
    streamChat: function (options) { return streamChat(withConfig(options)); },
    listConversations: function (params) { return listConversations(config, params); },
    listMessages: function (conversationId, params) { return listMessages(config, conversationId, params); },
    getMessage: function (messageId) { return getMessage(config, messageId); },
    getRequest: function (requestId) { return getRequest(config, requestId); },
    setFeedback: function (messageId, useful) { return setFeedback(config, messageId, useful); },
    deleteConversation: function (conversationId) { return deleteConversation(config, conversationId); },
    stopMessage: function (messageId) { return stopMessage(config, messageId); },
    stopRequest: function (requestId) { return stopRequest(config, requestId); },
  };
}

module.exports = {
  streamChat: streamChat,
  createClient: createClient,
  devLogin: devLogin,
  listConversations: listConversations,
  listMessages: listMessages,
  getMessage: getMessage,
  getRequest: getRequest,
  setFeedback: setFeedback,
  deleteConversation: deleteConversation,
  stopMessage: stopMessage,
  stopRequest: stopRequest,
  newRequestId: newRequestId,
  adapters: adapters,
};
