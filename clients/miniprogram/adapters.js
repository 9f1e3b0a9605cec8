/**
 * Platform adapters: one small object per mini-program runtime, so that chatrelay.js sees a
 * single transport whatever the platform. Plain ES2017, CommonJS, no dependencies.
 *
 * An adapter is { name, stream(request, sink) -> handle, request(request) -> Promise }:
 *
 *   request: { url, method, header, data?, timeout }
 *   sink:    head(statusCode?, headers?)  response head (statusCode may be unknown)
 *            bytes(chunk)                 ArrayBuffer | Uint8Array | string, as the runtime hands it over
 *            event({ event, data, id })   an SSE event the runtime parsed itself (EventSource)
 *            end({ statusCode, data, headers })   the response is complete
 *            fail(errMsg, response?)      the request failed; `response` when it was an HTTP error
 *                                         reported through fail (Alipay)
 *   handle:  { abort(), streaming }       streaming false: the body arrives only at end() (no
 *                                         chunked mode here): chatrelay.js then polls the turn
 *   request(): a plain request, resolved with { statusCode, data, headers }, rejected with
 *            { errMsg } (network failure) or { statusCode, data, headers } (HTTP error via fail).
 *
 * Callbacks of a request that was aborted may still arrive: chatrelay.js ignores them.
 */
'use strict';

function noop() {}

/** The request options every wx-like runtime understands (wx, uni, Taro, tt). */
function wxOptions(request, sink, chunked) {
  var options = { url: request.url, method: request.method, header: request.header };
  if (request.data !== undefined) options.data = request.data;
  if (chunked) options.enableChunked = true;
  options.responseType = 'arraybuffer';
  options.timeout = request.timeout;
  options.success = function (res) {
    sink.end({ statusCode: res && res.statusCode, data: res && res.data, headers: res && (res.header || res.headers) });
  };
  options.fail = function (err) { sink.fail((err && (err.errMsg || err.errorMessage)) || 'request failed'); };
  options.complete = noop; // uni-app returns a task only when success / fail / complete is passed
  return options;
}

/** Listen on a RequestTask (or Taro's Promise carrying the same methods). */
function attachTask(task, sink) {
  if (!task) return false;
  if (typeof task.onHeadersReceived === 'function') {
    task.onHeadersReceived(function (res) {
      sink.head(res && res.statusCode, res && (res.header || res.headers));
    });
  }
  if (typeof task.onChunkReceived !== 'function') return false;
  task.onChunkReceived(function (res) { sink.bytes(res && res.data); });
  return true;
}

function abortOf(task) {
  return function () {
    if (task && typeof task.abort === 'function') {
      try { task.abort(); } catch (e) { /* already finished */ }
    }
  };
}

/** A plain wx-style request as a Promise (wx, uni, Taro, tt). */
function wxRequest(api, request) {
  return new Promise(function (resolve, reject) {
    var options = { url: request.url, method: request.method, header: request.header };
    if (request.data !== undefined) options.data = request.data;
    if (request.timeout) options.timeout = request.timeout;
    options.success = function (res) {
      resolve({ statusCode: res && res.statusCode, data: res && res.data, headers: res && (res.header || res.headers) });
    };
    options.fail = function (err) { reject({ errMsg: (err && err.errMsg) || 'request failed' }); };
    var result = api.request(options);
    if (result && typeof result.then === 'function' && typeof result.catch === 'function') result.catch(noop);
  });
}

/**
 * WeChat: wx.request({ enableChunked: true }) (base library >= 2.20.2); also any object with a
 * wx-compatible request() (uni-app on mp-weixin, Taro, QQ, ...).
 */
function wechat(api) {
  if (!api || typeof api.request !== 'function') throw new Error('chatrelay: wechat(wx) needs an object with request()');
  return {
    name: 'wechat',
    stream: function (request, sink) {
      var task = api.request(wxOptions(request, sink, true));
      var streaming = attachTask(task, sink);
      return { abort: abortOf(task), streaming: streaming };
    },
    request: function (request) { return wxRequest(api, request); },
  };
}

/**
 * uni-app: uni.request. enableChunked and RequestTask.onChunkReceived work on mp-weixin (and on
 * every platform in uni-app x); the task exists only when success / fail / complete is passed,
 * which wxOptions always does. Where no chunk listener exists the turn is polled instead.
 */
function uniApp(uni) {
  var adapter = wechat(uni);
  adapter.name = 'uni-app';
  return adapter;
}

/**
 * Taro: Taro.request returns a Promise that carries abort / onHeadersReceived / onChunkReceived
 * (when the Taro version forwards them; some do not, NervJS/taro#14969); it rejects on failure,
 * so the rejection is caught here. A request whose Promise has no onChunkReceived is not
 * streamed (chatrelay.js polls the turn for it); later ones then use the runtime's own request
 * (Taro.miniGlobal, e.g. wx) when there is one.
 */
function taro(Taro) {
  if (!Taro || typeof Taro.request !== 'function') throw new Error('chatrelay: taro(Taro) needs Taro.request');
  var forwardsChunks = true;
  function native() {
    return Taro.miniGlobal && typeof Taro.miniGlobal.request === 'function' ? wechat(Taro.miniGlobal) : null;
  }
  return {
    name: 'taro',
    stream: function (request, sink) {
      if (!forwardsChunks && native()) return native().stream(request, sink);
      var task = Taro.request(wxOptions(request, sink, true));
      if (task && typeof task.catch === 'function') task.catch(noop);
      var streaming = attachTask(task, sink);
      if (!streaming) forwardsChunks = false;
      return { abort: abortOf(task), streaming: streaming };
    },
    request: function (request) { return wxRequest(Taro, request); },
  };
}

/**
 * Douyin: tt.createEventSource (base library >= 3.35.0, Douyin >= 30.8.0) where present: the
 * runtime parses the stream and hands over events (comments are invisible to it, so the JSON
 * wire format is used). Its onError hides the body of an HTTP error, so after an error before
 * the stream opened the next attempt goes through tt.request, which sees the JSON error (or
 * the replayed turn, as the same requestId is posted again). Without createEventSource,
 * tt.request with enableChunked where the task offers onChunkReceived, else polling.
 */
function douyin(tt) {
  if (!tt || typeof tt.request !== 'function') throw new Error('chatrelay: douyin(tt) needs tt.request');
  var plain = wechat(tt);
  var useEventSource = typeof tt.createEventSource === 'function';
  return {
    name: 'douyin',
    eventsOnly: function () { return useEventSource; },
    stream: function (request, sink) {
      if (!useEventSource) return plain.stream(request, sink);
      var params = { url: request.url, method: request.method, header: request.header };
      if (request.data !== undefined) params.data = request.data;
      var source = tt.createEventSource(params, request.timeout);
      var opened = false;
      var closed = false;
      source.onOpen(function (res) {
        opened = true;
        sink.head(res && res.statusCode, res && (res.header || res.headers));
      });
      source.onMessage(function (msg) {
        opened = true;
        sink.event({ event: (msg && msg.event) || 'message', data: msg && msg.data, id: msg && msg.lastEventId });
      });
      source.onError(function (err) {
        if (closed) return;
        closed = true;
        if (!opened) useEventSource = false; // an HTTP error? tt.request will show its JSON body
        sink.fail((err && err.errMsg) || 'eventsource error');
      });
      if (typeof source.onClose === 'function') {
        source.onClose(function () {
          if (closed) return;
          closed = true;
          sink.end({ statusCode: 200, data: null, headers: null });
        });
      }
      return {
        abort: function () {
          closed = true;
          try { source.close(); } catch (e) { /* already closed */ }
        },
        streaming: true,
      };
    },
    request: plain.request,
  };
}

/**
 * Alipay: my.request has no chunked mode; the whole body arrives at the end. Options use
 * `headers`, answers carry `status` / `headers` (newer base libraries also `statusCode` /
 * `header`); an HTTP error may come through fail with its status. chatrelay.js polls the turn
 * meanwhile.
 */
function alipay(my) {
  if (!my || typeof my.request !== 'function') throw new Error('chatrelay: alipay(my) needs my.request');
  function response(res) {
    return { statusCode: res && (res.statusCode || res.status), data: res && res.data,
      headers: res && (res.headers || res.header) };
  }
  function isHttpError(res) { return !!(res && (res.status || res.statusCode)); }
  function options(request) {
    var out = { url: request.url, method: request.method, headers: request.header, dataType: 'text' };
    if (request.data !== undefined) out.data = typeof request.data === 'string' ? request.data : JSON.stringify(request.data);
    if (request.timeout) out.timeout = request.timeout;
    return out;
  }
  return {
    name: 'alipay',
    stream: function (request, sink) {
      var o = options(request);
      o.success = function (res) { sink.end(response(res)); };
      o.fail = function (res) {
        var message = (res && (res.errorMessage || res.errMsg)) || 'request failed';
        if (isHttpError(res)) sink.fail(message, response(res));
        else sink.fail(message);
      };
      var task = my.request(o);
      return { abort: abortOf(task), streaming: false };
    },
    request: function (request) {
      return new Promise(function (resolve, reject) {
        var o = options(request);
        o.success = function (res) { resolve(response(res)); };
        o.fail = function (res) {
          if (isHttpError(res)) reject(response(res));
          else reject({ errMsg: (res && (res.errorMessage || res.errMsg)) || 'request failed' });
        };
        my.request(o);
      });
    },
  };
}

/** The adapter for the runtime this code runs in (wx, tt, my, uni globals, in that order). */
function detect(scope) {
  var g = scope || (typeof globalThis !== 'undefined' ? globalThis : {});
  /* eslint-disable no-undef */
  var wxApi = g.wx || (typeof wx !== 'undefined' ? wx : null);
  var ttApi = g.tt || (typeof tt !== 'undefined' ? tt : null);
  var myApi = g.my || (typeof my !== 'undefined' ? my : null);
  var uniApi = g.uni || (typeof uni !== 'undefined' ? uni : null);
  /* eslint-enable no-undef */
  if (wxApi && typeof wxApi.request === 'function') return wechat(wxApi);
  if (ttApi && typeof ttApi.request === 'function') return douyin(ttApi);
  if (myApi && typeof myApi.request === 'function') return alipay(myApi);
  if (uniApi && typeof uniApi.request === 'function') return uniApp(uniApi);
  return null;
}

module.exports = { wechat: wechat, uniApp: uniApp, taro: taro, douyin: douyin, alipay: alipay, detect: detect };
