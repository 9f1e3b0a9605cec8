/**
 * chatrelay client for WeChat mini-programs; also uni-app and Taro (pass `uni` or `Taro`
 * as `wx`). No dependencies besides ./sse-parser.js; plain ES2017; needs base library
 * >= 2.20.2 for wx.request({ enableChunked: true }).
 *
 * streamChat() posts the question once and parses the SSE answer (docs/api.md) from the
 * pieces onChunkReceived hands over. Exactly one terminal callback, onDone or onError,
 * is called, once; nothing is called after it.
 */
'use strict';

var sse = require('./sse-parser.js');

function noop() {}

function defaultWx() {
  if (typeof globalThis !== 'undefined' && globalThis.wx) return globalThis.wx;
  if (typeof wx !== 'undefined') return wx; // eslint-disable-line no-undef
  return null;
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
    status: status,
  };
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

function copyBytes(data) {
  // The runtime may reuse a chunk's buffer: keep a copy of what is buffered for later.
  return new Uint8Array(data instanceof Uint8Array ? data : new Uint8Array(data)).slice(0);
}

function safeCall(fn, args) {
  try {
    fn.apply(null, args);
  } catch (e) {
    // A bug in page code must not derail the stream; make it visible in the console.
    if (typeof console !== 'undefined') console.error('chatrelay: callback threw', e);
  }
}

/**
 * streamChat(options) -> { stop() }
 *
 * options:
 *   url            server base URL, e.g. 'https://api.example.com'
 *   token          bearer token
 *   prompt         the question; conversationId?, model?, requestId?, terminal?, window? as in docs/api.md
 *   format         'json' (default) or 'text' (meta then comes from the X-Conversation-Id /
 *                  X-Message-Id response headers, through onHeadersReceived)
 *   onMeta({conversationId, messageId, model})
 *   onDelta(delta, textSoFar, offset)   offset: the event's id, the answer's length in code points
 *   onReasoning(delta, reasoningSoFar)  reasoning models only; not part of the answer
 *   onDone({finishReason, usage, text})
 *   onError({code, message, status?, field?, offset?, text})   text: the partial answer received;
 *                  for `answer_blocked` (content check) it is already cut at `offset`: show it
 *                  in place of what onDelta delivered
 *   onHeaders({statusCode, header})     optional, when the runtime reports headers
 *   idleTimeoutMs  30000: no byte for this long = a dead connection (iOS may call neither
 *                  fail nor complete when the network drops); the server pings every 15 s
 *   requestTimeoutMs  wx.request `timeout` for the whole answer (default 600000)
 *   maxResumes     3: after a drop, resume at most this many times (0: never) with
 *                  GET /v1/messages/{id}/stream?after=<offset> (never posting the question again)
 *   endGraceMs     100: how long to wait for late chunks after `success` before a
 *                  stream without `done` counts as dropped
 *   stopUrl        URL (or function(messageId) -> URL) of the stop call; default
 *                  `${url}/v1/messages/${messageId}/stop`
 *   wx             wx, uni or Taro (default: the global wx)
 *   setTimeout / clearTimeout   timer functions (tests)
 *
 * stop(): aborts the request and, once the message id is known, tells the server (which
 * stores the turn as `stopped`); reports onDone({finishReason: 'stopped', ...}). It returns
 * a Promise of the stop call's answer (null when nothing was sent).
 */
function streamChat(options) {
  var api = options.wx || defaultWx();
  if (!api || typeof api.request !== 'function') {
    throw new Error('chatrelay: no wx.request; pass `wx` (or uni / Taro) in the options');
  }
  var base = baseUrl(options.url);
  var format = options.format === 'text' ? 'text' : 'json';
  var auth = { Authorization: 'Bearer ' + options.token, 'Content-Type': 'application/json' };
  var idleTimeoutMs = options.idleTimeoutMs > 0 ? options.idleTimeoutMs : 30000;
  var requestTimeoutMs = options.requestTimeoutMs > 0 ? options.requestTimeoutMs : 600000;
  var maxResumes = options.maxResumes >= 0 ? options.maxResumes : 3;
  var endGraceMs = options.endGraceMs >= 0 ? options.endGraceMs : 100;
  var setTimer = options.setTimeout || setTimeout;
  var clearTimer = options.clearTimeout || clearTimeout;
  var onMeta = options.onMeta || noop;
  var onDelta = options.onDelta || noop;
  var onReasoning = options.onReasoning || noop;
  var onDone = options.onDone || noop;
  var onError = options.onError || noop;
  var onHeaders = options.onHeaders || noop;

  var text = '';
  var reasoning = '';
  var offset = 0;          // server offset after the last answer event: where a resume starts
  var meta = null;         // reported once
  var messageId = '';      // from meta or the X-Message-Id header: what stop() needs
  var failure = null;      // an `error` event: reported at `done` or when the stream ends
  var ended = false;
  var attempt = 0;         // the live request; callbacks of aborted ones are ignored
  var task = null;
  var watchdog = null;
  var resumes = 0;

  function clearWatchdog() {
    if (watchdog !== null) { clearTimer(watchdog); watchdog = null; }
  }

  function abortTask() {
    attempt += 1;          // whatever the old task still reports is ignored from now on
    clearWatchdog();
    var old = task;
    task = null;
    if (old && typeof old.abort === 'function') {
      try { old.abort(); } catch (e) { /* already finished */ }
    }
  }

  function finishDone(payload) {
    if (ended) return;
    ended = true;
    attempt += 1;
    clearWatchdog();
    safeCall(onDone, [payload]);
  }

  function finishError(error) {
    if (ended) return;
    ended = true;
    attempt += 1;
    clearWatchdog();
    error.text = text;
    safeCall(onError, [error]);
  }

  /** The connection ended or died before the answer did: resume from the offset, or report. */
  function dropped(code, message) {
    if (ended) return;
    abortTask();
    if (failure) { finishError(failure); return; }
    if (messageId && resumes < maxResumes) {
      resumes += 1;
      open(true);
      return;
    }
    finishError({ code: code, message: message });
  }

  function reportMeta(value) {
    if (value.messageId) messageId = value.messageId;
    if (meta) return;
    meta = value;
    safeCall(onMeta, [value]);
  }

  function parseJson(data) {
    try { return JSON.parse(data); } catch (e) { return undefined; }
  }

  function handleEvent(ev) {
    if (ev.event === 'message') {
      if (ev.data === '[DONE]') {
        // `done` normally came first; without it the answer ended all the same.
        if (failure) finishError(failure);
        else finishDone({ finishReason: null, usage: null, text: text });
        return;
      }
      var delta;
      if (format === 'text') {
        delta = ev.data;
      } else {
        var body = parseJson(ev.data);
        if (!body || typeof body.delta !== 'string') { badResponse(ev); return; }
        delta = body.delta;
      }
      text += delta;
      var id = parseInt(ev.id, 10);
      if (!isNaN(id)) offset = id;
      safeCall(onDelta, [delta, text, offset]);
      return;
    }
    var payload = parseJson(ev.data);
    if (!payload || typeof payload !== 'object') {
      if (ev.event === 'meta' || ev.event === 'done' || ev.event === 'error') badResponse(ev);
      return;
    }
    if (ev.event === 'meta') {
      reportMeta({ conversationId: payload.conversationId, messageId: payload.messageId, model: payload.model });
    } else if (ev.event === 'reasoning') {
      var piece = typeof payload.delta === 'string' ? payload.delta : '';
      reasoning += piece;
      safeCall(onReasoning, [piece, reasoning]);
    } else if (ev.event === 'error') {
      failure = { code: payload.code || 'internal_error', message: payload.message || '' };
      if (payload.code === 'answer_blocked' && typeof payload.offset === 'number') {
        // The content check refused text already shown: keep only the part before the cut.
        text = firstCodePoints(text, payload.offset);
        offset = Math.min(offset, payload.offset);
        failure.offset = payload.offset;
      }
    } else if (ev.event === 'done') {
      if (failure) {
        failure.finishReason = payload.finishReason;
        failure.usage = payload.usage || null;
        finishError(failure);
      } else {
        finishDone({ finishReason: payload.finishReason, usage: payload.usage || null, text: text });
      }
    }
    // other event names: ignored (forward compatible)
  }

  function badResponse(ev) {
    abortTask();
    var shown = String(ev.data).slice(0, 200);
    finishError({ code: 'bad_response', message: 'unexpected `' + ev.event + '` event: ' + shown });
  }

  function open(resume) {
    attempt += 1;
    var mine = attempt;
    var live = function () { return mine === attempt && !ended; };
    var status = 0;          // from onHeadersReceived, when the runtime reports it
    var errorBytes = [];     // a non-200 body, should it come as chunks after all
    var gotChunk = false;
    var closing = false;     // success / complete came; waiting endGraceMs for late chunks
    var parser = sse.createParser({ onEvent: function (ev) { if (live()) handleEvent(ev); } });

    function armWatchdog() {
      clearWatchdog();
      watchdog = setTimer(function () {
        if (!live()) return;
        watchdog = null;
        dropped('client_idle_timeout', 'no data for ' + idleTimeoutMs + ' ms');
      }, idleTimeoutMs);
    }

    function headersSeen(statusCode, headers) {
      if (statusCode) status = statusCode;
      var id = header(headers, 'X-Message-Id');
      if (id) messageId = id;
      if (format === 'text' && !meta && (status === 200 || !status) && id) {
        reportMeta({ conversationId: header(headers, 'X-Conversation-Id'), messageId: id, model: undefined });
      }
    }

    var query = [];
    if (resume) query.push('after=' + offset);
    if (format === 'text') query.push('format=text');
    var qs = query.length ? '?' + query.join('&') : '';
    var request;
    if (resume) {
      request = { url: base + '/v1/messages/' + encodeURIComponent(messageId) + '/stream' + qs, method: 'GET' };
    } else {
      var data = { prompt: options.prompt };
      ['conversationId', 'model', 'requestId', 'terminal', 'window'].forEach(function (key) {
        if (options[key] != null && options[key] !== '') data[key] = options[key];
      });
      request = { url: base + '/v1/chat/stream' + qs, method: 'POST', data: data };
    }
    request.header = auth;
    request.enableChunked = true;
    request.responseType = 'arraybuffer';
    request.timeout = requestTimeoutMs;
    request.success = function (res) {
      if (!live()) return;
      var code = res && res.statusCode;
      if (code !== 200) {
        // A JSON error answer: it arrives here, not through onChunkReceived.
        var body = res && res.data;
        if ((body == null || body === '' || (isBytes(body) && !body.byteLength)) && errorBytes.length) {
          body = concatBytes(errorBytes);
        }
        abortTask();
        finishError(httpError(code, body));
        return;
      }
      headersSeen(200, res.header);
      if (!gotChunk && res.data && (isBytes(res.data) ? res.data.byteLength : String(res.data).length)) {
        // No chunk at all (a runtime without chunked transfer): the whole stream is here.
        parser.feed(typeof res.data === 'string' ? new Uint8Array(utf8Bytes(res.data)) : res.data);
      }
      closed();
    };
    request.fail = function (err) {
      if (!live()) return;
      dropped('network_error', (err && err.errMsg) || 'request failed');
    };
    request.complete = function () {
      // Called after success or fail, which normally settled everything already.
      if (live() && !closing) closed();
    };

    /**
     * The response is over but no `done` came (yet). Some runtimes queue the last chunk
     * behind success: give it endGraceMs before calling the connection dropped.
     */
    function closed() {
      if (!live() || closing) return;
      closing = true;
      clearWatchdog();
      watchdog = setTimer(function () {
        watchdog = null;
        if (!live()) return;
        parser.end();
        dropped('stream_ended', 'the connection closed before the answer was complete');
      }, endGraceMs);
    }

    task = api.request(request);
    if (task && typeof task.onHeadersReceived === 'function') {
      task.onHeadersReceived(function (res) {
        if (!live()) return;
        if (!closing) armWatchdog();
        headersSeen(res && res.statusCode, res && (res.header || res.headers));
        safeCall(onHeaders, [{ statusCode: res && res.statusCode, header: res && (res.header || res.headers) }]);
      });
    }
    if (task && typeof task.onChunkReceived === 'function') {
      task.onChunkReceived(function (res) {
        if (!live()) return;
        if (!closing) armWatchdog();
        gotChunk = true;
        if (!res || res.data == null) return;
        var data = typeof res.data === 'string' ? new Uint8Array(utf8Bytes(res.data)) : res.data;
        if (status && status !== 200) { errorBytes.push(copyBytes(data)); return; }
        parser.feed(data);
      });
    }
    if (live()) armWatchdog();
  }

  open(false);

  return {
    stop: function () {
      if (ended) return Promise.resolve(null);
      var id = messageId;
      abortTask();
      finishDone({ finishReason: 'stopped', usage: null, text: text });
      if (!id) return Promise.resolve(null);
      var target = typeof options.stopUrl === 'function' ? options.stopUrl(id)
        : options.stopUrl || base + '/v1/messages/' + encodeURIComponent(id) + '/stop';
      return send(api, { url: target, method: 'POST', header: auth, data: {} }).catch(function (error) {
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

/** wx.request as a Promise of the JSON answer; rejects with {code, message, status?}. */
function send(api, request) {
  return new Promise(function (resolve, reject) {
    request.success = function (res) {
      if (res.statusCode >= 200 && res.statusCode < 300) resolve(parseBody(res.data));
      else reject(httpError(res.statusCode, res.data));
    };
    request.fail = function (err) {
      reject({ code: 'network_error', message: (err && err.errMsg) || 'request failed' });
    };
    api.request(request);
  });
}

/** options: { url, token?, wx? } */
function call(options, method, path, data) {
  var api = (options && options.wx) || defaultWx();
  if (!api) return Promise.reject({ code: 'no_wx', message: 'pass `wx` (or uni / Taro) in the options' });
  var headers = { 'Content-Type': 'application/json' };
  if (options.token) headers.Authorization = 'Bearer ' + options.token;
  var request = { url: baseUrl(options.url) + path, method: method, header: headers };
  if (data !== undefined) request.data = data;
  return send(api, request);
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

/** The same functions with { url, token, wx } bound once. */
function createClient(config) {
  function withConfig(extra) { return Object.assign({}, config, extra); }
  return {
    streamChat: function (options) { return streamChat(withConfig(options)); },
    listConversations: function (params) { return listConversations(config, params); },
    listMessages: function (conversationId, params) { return listMessages(config, conversationId, params); },
    setFeedback: function (messageId, useful) { return setFeedback(config, messageId, useful); },
    deleteConversation: function (conversationId) { return deleteConversation(config, conversationId); },
    stopMessage: function (messageId) { return stopMessage(config, messageId); },
  };
}

module.exports = {
  streamChat: streamChat,
  createClient: createClient,
  devLogin: devLogin,
  listConversations: listConversations,
  listMessages: listMessages,
  setFeedback: setFeedback,
  deleteConversation: deleteConversation,
  stopMessage: stopMessage,
};
