/**
 * chatrelay client for WeChat mini-programs (also uni-app / Taro: pass their `uni`/`Taro`
 * object as `wx`). No dependencies; needs base library >= 2.20.2 for enableChunked.
 *
 * streamChat posts the question once, parses the SSE stream from onChunkReceived pieces,
 * and after a dropped connection resumes with GET /v1/messages/{id}/stream?after=<offset>
 * (never re-posting the question: that would bill and store it twice).
 */
'use strict';

var sse = require('./sse-parser');

function bytesToText(data) {
  if (data == null) return '';
  if (typeof data === 'string') return data;
  if (data instanceof ArrayBuffer || data instanceof Uint8Array) {
    var bytes = data instanceof Uint8Array ? data : new Uint8Array(data);
    return typeof TextDecoder !== 'undefined' ? new TextDecoder('utf-8').decode(bytes) : sse.decodeUtf8(bytes);
  }
  return JSON.stringify(data);
}

function errorFromBody(statusCode, data) {
  var body = data;
  if (typeof data !== 'object' || data instanceof ArrayBuffer || data instanceof Uint8Array) {
    try { body = JSON.parse(bytesToText(data)); } catch (e) { body = null; }
  }
  return {
    code: (body && body.code) || 'http_' + statusCode,
    message: (body && body.message) || 'HTTP ' + statusCode,
    status: statusCode,
    retryAfter: body && body.retryAfter,
  };
}

/**
 * streamChat(options) -> { stop() }
 * options: url (server base URL), token, prompt, conversationId?, model?, requestId?,
 *   onMeta({conversationId, messageId, model}), onDelta(delta, text, offset), onReasoning(delta),
 *   onDone({finishReason, usage, text}), onError({code, message, status?, text}),
 *   idleTimeoutMs (30000): no byte for this long counts as a dropped connection,
 *   maxResumes (3), requestTimeoutMs (600000), wx, setTimeout/clearTimeout (for tests).
 * Exactly one of onDone / onError is called, once.
 */
function streamChat(options) {
  var api = options.wx || (typeof wx !== 'undefined' ? wx : null); // eslint-disable-line no-undef
  if (!api) throw new Error('streamChat needs wx (or uni / Taro) in options.wx');
  var base = String(options.url).replace(/\/+$/, '');
  var headers = { Authorization: 'Bearer ' + options.token, 'Content-Type': 'application/json' };
  var idleTimeoutMs = options.idleTimeoutMs || 30000;
  var maxResumes = options.maxResumes == null ? 3 : options.maxResumes;
  var setTimer = options.setTimeout || setTimeout;
  var clearTimer = options.clearTimeout || clearTimeout;
  var noop = function () {};
  var onMeta = options.onMeta || noop;
  var onDelta = options.onDelta || noop;
  var onReasoning = options.onReasoning || noop;
  var onDone = options.onDone || noop;
  var onError = options.onError || noop;

  var text = '';
  var offset = 0;          // the server's offset (code points) after the last delta: resume point
  var meta = null;
  var failure = null;      // an `error` event, reported when the stream ends
  var ended = false;
  var task = null;
  var watchdog = null;
  var resumes = 0;
  var current = 0;         // id of the live request; callbacks of older ones are ignored

  function clearWatchdog() { if (watchdog) { clearTimer(watchdog); watchdog = null; } }

  function finish(ok, payload) {
    if (ended) return;
    ended = true;
    clearWatchdog();
    current += 1;
    if (ok) onDone(payload); else onError(payload);
  }

  function abortTask() {
    current += 1;
    clearWatchdog();
    if (task) { try { task.abort(); } catch (e) { /* already finished */ } }
    task = null;
  }

  function dropped(code, message) {
    // The connection went away before the end: resume from the offset, or give up.
    abortTask();
    if (ended) return;
    if (meta && resumes < maxResumes) { resumes += 1; open(true); return; }
    finish(false, { code: code, message: message, text: text });
  }

  function onEvent(ev, id) {
    if (id !== current || ended) return;
    if (ev.event === 'meta') {
      var first = !meta;
      meta = JSON.parse(ev.data);
      if (first) onMeta(meta);
    } else if (ev.event === 'message') {
      if (ev.data === '[DONE]') {
        if (!ended) finish(!failure, failure ? mergeText(failure) : { finishReason: 'stop', usage: null, text: text });
        return;
      }
      var delta = JSON.parse(ev.data).delta || '';
      text += delta;
      offset = parseInt(ev.id, 10) || offset;
      onDelta(delta, text, offset);
    } else if (ev.event === 'reasoning') {
      onReasoning(JSON.parse(ev.data).delta || '');
    } else if (ev.event === 'error') {
      failure = JSON.parse(ev.data);
    } else if (ev.event === 'done') {
      var done = JSON.parse(ev.data);
      if (failure) finish(false, mergeText(failure));
      else finish(true, { finishReason: done.finishReason, usage: done.usage, text: text });
    }
  }

  function mergeText(error) {
    return { code: error.code, message: error.message, text: text };
  }

  function armWatchdog(id) {
    clearWatchdog();
    watchdog = setTimer(function () {
      if (id === current && !ended) dropped('client_idle_timeout', 'no data for ' + idleTimeoutMs + ' ms');
    }, idleTimeoutMs);
  }

  function open(resume) {
    current += 1;
    var id = current;
    var parser = sse.createParser({ onEvent: function (ev) { onEvent(ev, id); } });
    var request = resume
      ? { url: base + '/v1/messages/' + encodeURIComponent(meta.messageId) + '/stream?after=' + offset, method: 'GET' }
      : {
          url: base + '/v1/chat/stream',
          method: 'POST',
          data: {
            prompt: options.prompt,
            conversationId: options.conversationId || undefined,
            model: options.model || undefined,
            requestId: options.requestId || undefined,
          },
        };
    request.header = headers;
    request.enableChunked = true;
    request.responseType = 'arraybuffer';
    request.timeout = options.requestTimeoutMs || 600000;
    request.success = function (res) {
      if (id !== current || ended) return;
      if (res.statusCode !== 200) {
        // An error answer is plain JSON; it may never reach onChunkReceived.
        abortTask();
        finish(false, Object.assign(errorFromBody(res.statusCode, res.data), { text: text }));
        return;
      }
      dropped('stream_ended', 'the stream ended before the answer did');
    };
    request.fail = function (err) {
      if (id !== current || ended) return;
      dropped('network_error', (err && err.errMsg) || 'request failed');
    };
    task = api.request(request);
    if (task && task.onChunkReceived) {
      task.onChunkReceived(function (res) {
        if (id !== current || ended) return;
        armWatchdog(id);
        parser.feed(res.data);
      });
    }
    armWatchdog(id);
  }

  open(false);

  return {
    /** Stop the answer: abort the request AND tell the server, which stores it as stopped. */
    stop: function () {
      if (ended) return;
      var messageId = meta && meta.messageId;
      abortTask();
      if (messageId) {
        api.request({ url: base + '/v1/messages/' + encodeURIComponent(messageId) + '/stop', method: 'POST',
                      header: headers, data: {} });
      }
      finish(true, { finishReason: 'stopped', usage: null, text: text });
    },
  };
}

function call(options, method, path, data) {
  var api = options.wx || (typeof wx !== 'undefined' ? wx : null); // eslint-disable-line no-undef
  var base = String(options.url).replace(/\/+$/, '');
  return new Promise(function (resolve, reject) {
    var header = { 'Content-Type': 'application/json' };
    if (options.token) header.Authorization = 'Bearer ' + options.token;
    api.request({
      url: base + path, method: method, header: header, data: data,
      success: function (res) {
        if (res.statusCode >= 200 && res.statusCode < 300) {
          resolve(typeof res.data === 'string' && res.data ? JSON.parse(res.data) : res.data);
        } else {
          reject(errorFromBody(res.statusCode, res.data));
        }
      },
      fail: function (err) { reject({ code: 'network_error', message: (err && err.errMsg) || 'request failed' }); },
    });
  });
}

function query(params) {
  var parts = [];
  Object.keys(params).forEach(function (k) {
    if (params[k] != null) parts.push(encodeURIComponent(k) + '=' + encodeURIComponent(params[k]));
  });
  return parts.length ? '?' + parts.join('&') : '';
}

module.exports = {
  streamChat: streamChat,
  devLogin: function (o, userId) { return call(o, 'POST', '/v1/auth/dev', { userId: userId }); },
  listConversations: function (o, p) { return call(o, 'GET', '/v1/conversations' + query(p || {})); },
  listMessages: function (o, id, p) {
    return call(o, 'GET', '/v1/conversations/' + encodeURIComponent(id) + '/messages' + query(p || {}));
  },
  setFeedback: function (o, id, useful) {
    return call(o, 'PUT', '/v1/messages/' + encodeURIComponent(id) + '/feedback', { useful: useful });
  },
  deleteConversation: function (o, id) { return call(o, 'DELETE', '/v1/conversations/' + encodeURIComponent(id)); },
  stopMessage: function (o, id) { return call(o, 'POST', '/v1/messages/' + encodeURIComponent(id) + '/stop', {}); },
};
