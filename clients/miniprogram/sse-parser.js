/**
 * Byte-level SSE parser for WeChat mini-programs (wx.request enableChunked).
 *
 * onChunkReceived hands over ArrayBuffers that merge or split events anywhere, even
 * inside a UTF-8 character. Lines are split on bytes (CR, LF, CRLF; a CR at the end of
 * one chunk and an LF at the start of the next are one line break) and only whole lines
 * are decoded, so a character cut across chunks is never garbled: LF and CR never occur
 * inside a multi-byte UTF-8 sequence. Devices have no TextDecoder, so a small decoder
 * is built in and used only when TextDecoder is absent.
 *
 * Follows the WHATWG "event stream interpretation": multi-line data joined with LF,
 * comments ignored, events without data not dispatched, id (without NUL) kept as the
 * last event id, retry (digits only) reported, one leading BOM stripped, an
 * unterminated event at the end discarded.
 */
'use strict';

var LF = 10;
var CR = 13;

/** UTF-8 bytes (Uint8Array) to a string, invalid sequences as U+FFFD. */
function decodeUtf8(bytes) {
  var out = '';
  var chunk = [];
  var i = 0;
  var n = bytes.length;
  function push(code) {
    if (code > 0xffff) {
      code -= 0x10000;
      chunk.push(0xd800 + (code >> 10), 0xdc00 + (code & 0x3ff));
    } else {
      chunk.push(code);
    }
    if (chunk.length > 4096) {
      out += String.fromCharCode.apply(null, chunk);
      chunk = [];
    }
  }
  while (i < n) {
    var b = bytes[i];
    var need = 0;
    var code = 0;
    var lo = 0x80;
    var hi = 0xbf;
    if (b < 0x80) { push(b); i += 1; continue; }
    if (b >= 0xc2 && b <= 0xdf) { need = 1; code = b & 0x1f; }
    else if (b >= 0xe0 && b <= 0xef) {
      need = 2; code = b & 0x0f;
      if (b === 0xe0) lo = 0xa0;        // no overlong forms
      if (b === 0xed) hi = 0x9f;        // no surrogates
    } else if (b >= 0xf0 && b <= 0xf4) {
      need = 3; code = b & 0x07;
      if (b === 0xf0) lo = 0x90;
      if (b === 0xf4) hi = 0x8f;        // nothing above U+10FFFF
    } else { push(0xfffd); i += 1; continue; }
    var j = 1;
    for (; j <= need; j++) {
      var c = i + j < n ? bytes[i + j] : -1;
      if (j === 1 ? (c < lo || c > hi) : (c < 0x80 || c > 0xbf)) break;
      code = (code << 6) | (c & 0x3f);
    }
    if (j <= need) {
      // WHATWG "maximal subpart": one U+FFFD for the bytes read so far, go on after them.
      push(0xfffd);
      i += j;
      continue;
    }
    push(code);
    i += need + 1;
  }
  return out + String.fromCharCode.apply(null, chunk);
}

function decoderFor() {
  // Checked at call time: devtools have TextDecoder, devices do not.
  if (typeof TextDecoder !== 'undefined') {
    // ignoreBOM: keep a U+FEFF inside the stream; only the stream's first BOM is dropped (below).
    var decoder = new TextDecoder('utf-8', { ignoreBOM: true });
    return function (bytes) { return decoder.decode(bytes); };
  }
  return decodeUtf8;
}

function toBytes(chunk) {
  if (chunk instanceof Uint8Array) return chunk;
  if (chunk instanceof ArrayBuffer) return new Uint8Array(chunk);
  if (chunk && chunk.buffer instanceof ArrayBuffer) {
    return new Uint8Array(chunk.buffer, chunk.byteOffset || 0, chunk.byteLength);
  }
  throw new TypeError('feed() takes an ArrayBuffer or a Uint8Array');
}

/**
 * createParser({ onEvent, onRetry }) -> { feed(chunk), end(), lastEventId() }
 * onEvent({ event, data, id }) for each dispatched event.
 */
function createParser(options) {
  var onEvent = options && options.onEvent;
  var onRetry = options && options.onRetry;
  if (typeof onEvent !== 'function') throw new TypeError('onEvent is required');
  var decode = decoderFor();
  var pending = new Uint8Array(0);   // bytes of an unfinished line
  var skipLF = false;                // the last chunk ended with CR: a leading LF belongs to it
  var atStart = true;                // a BOM may only stand at the very start
  var eventType = '';
  var data = [];
  var hasData = false;
  var lastId = '';

  function dispatch() {
    if (hasData) {
      onEvent({ event: eventType || 'message', data: data.join('\n'), id: lastId });
    }
    eventType = '';
    data = [];
    hasData = false;
  }

  function line(text) {
    if (text === '') { dispatch(); return; }
    if (text.charCodeAt(0) === 58) return; // ':' comment
    var colon = text.indexOf(':');
    var name = colon === -1 ? text : text.slice(0, colon);
    var value = colon === -1 ? '' : text.slice(colon + 1);
    if (value.charCodeAt(0) === 32) value = value.slice(1);
    if (name === 'data') { data.push(value); hasData = true; }
    else if (name === 'event') { eventType = value; }
    else if (name === 'id') { if (value.indexOf('\0') === -1) lastId = value; }
    else if (name === 'retry') { if (/^\d+$/.test(value) && onRetry) onRetry(parseInt(value, 10)); }
  }

  function feed(chunk) {
    var bytes = toBytes(chunk);
    if (!bytes.length) return;
    if (pending.length) {
      var joined = new Uint8Array(pending.length + bytes.length);
      joined.set(pending, 0);
      joined.set(bytes, pending.length);
      bytes = joined;
    }
    var start = 0;
    if (skipLF && bytes[0] === LF && !pending.length) start = 1;
    skipLF = false;
    if (atStart && bytes.length - start >= 3) {
      if (bytes[start] === 0xef && bytes[start + 1] === 0xbb && bytes[start + 2] === 0xbf) start += 3;
      atStart = false;
    } else if (atStart && bytes.length - start > 0 && bytes[start] !== 0xef) {
      atStart = false;
    }
    if (atStart) { pending = bytes.slice(start); return; } // fewer than 3 bytes that may be a BOM
    var lineStart = start;
    for (var i = start; i < bytes.length; i++) {
      var b = bytes[i];
      if (b === LF || b === CR) {
        line(decode(bytes.subarray(lineStart, i)));
        if (b === CR) {
          if (i + 1 < bytes.length) {
            if (bytes[i + 1] === LF) i += 1;
          } else {
            skipLF = true;
          }
        }
        lineStart = i + 1;
      }
    }
    pending = bytes.slice(lineStart);
  }

  function end() {
    // The spec discards an event that was never terminated by a blank line.
    pending = new Uint8Array(0);
    eventType = '';
    data = [];
    hasData = false;
  }

  return { feed: feed, end: end, lastEventId: function () { return lastId; } };
}

module.exports = { createParser: createParser, decodeUtf8: decodeUtf8 };
