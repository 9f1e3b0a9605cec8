/**
 * Byte-level SSE parser for WeChat mini-programs (wx.request with enableChunked).
 *
 * onChunkReceived hands over ArrayBuffers that merge or split events anywhere, even
 * inside a UTF-8 character. Lines are therefore split on BYTES (CR, LF or CRLF; a CR
 * ending one chunk and an LF starting the next are a single line break) and only whole
 * lines are decoded: CR and LF never occur inside a multi-byte UTF-8 sequence, so a
 * character cut across chunks is never garbled.
 *
 * Interpretation follows the WHATWG HTML "event stream interpretation": multi-line
 * data joined with LF, comment lines (':') ignored, events without a data field not
 * dispatched, `id` (unless it contains NUL) kept as the last event id, `retry` (ASCII
 * digits only) reported, one space after the colon removed, one UTF-8 BOM at the very
 * start of the stream dropped, an event not terminated by a blank line discarded at end().
 *
 * Devices have no TextDecoder (only the devtools do), so a small UTF-8 decoder is built
 * in and used whenever TextDecoder is absent. Plain ES2017, CommonJS, no dependencies.
 */
'use strict';

var LF = 0x0a;
var CR = 0x0d;
var COLON = 0x3a;
var SPACE = 0x20;

/**
 * Decode UTF-8 bytes (Uint8Array or array of numbers) to a string. Invalid input becomes
 * U+FFFD, one per "maximal subpart" exactly as the WHATWG (and node's) decoder does:
 * no overlong forms, no surrogates, nothing above U+10FFFF; astral characters become
 * surrogate pairs.
 */
function decodeUtf8(bytes) {
  var out = '';
  var units = [];
  var n = bytes.length;
  var i = 0;

  function emit(code) {
    if (code > 0xffff) {
      code -= 0x10000;
      units.push(0xd800 + (code >> 10), 0xdc00 + (code & 0x3ff));
    } else {
      units.push(code);
    }
    if (units.length >= 4096) { // keep String.fromCharCode.apply well below argument limits
      out += String.fromCharCode.apply(null, units);
      units = [];
    }
  }

  while (i < n) {
    var b = bytes[i];
    if (b < 0x80) { emit(b); i += 1; continue; }
    var need;
    var code;
    var lower = 0x80; // allowed range of the second byte
    var upper = 0xbf;
    if (b >= 0xc2 && b <= 0xdf) { need = 1; code = b & 0x1f; }
    else if (b >= 0xe0 && b <= 0xef) {
      need = 2; code = b & 0x0f;
      if (b === 0xe0) lower = 0xa0;      // overlong
      else if (b === 0xed) upper = 0x9f; // UTF-16 surrogates
    } else if (b >= 0xf0 && b <= 0xf4) {
      need = 3; code = b & 0x07;
      if (b === 0xf0) lower = 0x90;      // overlong
      else if (b === 0xf4) upper = 0x8f; // above U+10FFFF
    } else {
      emit(0xfffd); i += 1; continue;    // 0x80-0xC1, 0xF5-0xFF never start a character
    }
    var seen = 1;
    while (seen <= need) {
      var c = i + seen < n ? bytes[i + seen] : -1;
      var lo = seen === 1 ? lower : 0x80;
      var hi = seen === 1 ? upper : 0xbf;
      if (c < lo || c > hi) break;
      code = (code << 6) | (c & 0x3f);
      seen += 1;
    }
    if (seen <= need) {
      // Truncated or broken sequence: one U+FFFD for the bytes consumed, then resume at
      // the offending byte (it may start a character of its own).
      emit(0xfffd);
      i += seen;
      continue;
    }
    emit(code);
    i += need + 1;
  }
  return out + String.fromCharCode.apply(null, units);
}

/** The line decoder, chosen when a parser is created (so tests can remove TextDecoder). */
function lineDecoder() {
  if (typeof TextDecoder !== 'undefined') {
    // ignoreBOM: a U+FEFF inside a line is content; only the stream's first BOM is dropped.
    var decoder = new TextDecoder('utf-8', { ignoreBOM: true });
    return function (bytes) { return decoder.decode(bytes); };
  }
  return decodeUtf8;
}

function isArrayBuffer(value) {
  // instanceof fails across realms (the mini-program's native bridge, node's vm).
  return value instanceof ArrayBuffer || Object.prototype.toString.call(value) === '[object ArrayBuffer]';
}

/** ArrayBuffer, typed array or DataView -> Uint8Array view (no copy). */
function toBytes(chunk) {
  if (chunk instanceof Uint8Array) return chunk;
  if (isArrayBuffer(chunk)) return new Uint8Array(chunk);
  if (chunk && typeof chunk.byteLength === 'number' && chunk.buffer && isArrayBuffer(chunk.buffer)) {
    return new Uint8Array(chunk.buffer, chunk.byteOffset || 0, chunk.byteLength);
  }
  throw new TypeError('feed() takes an ArrayBuffer or a Uint8Array');
}

function concat(list) {
  var total = 0;
  for (var i = 0; i < list.length; i++) total += list[i].length;
  var out = new Uint8Array(total);
  var at = 0;
  for (var j = 0; j < list.length; j++) { out.set(list[j], at); at += list[j].length; }
  return out;
}

function startsWith(bytes, prefix) {
  if (bytes.length < prefix.length) return false;
  for (var k = 0; k < prefix.length; k++) if (bytes[k] !== prefix[k]) return false;
  return true;
}

var BOM = [0xef, 0xbb, 0xbf];
var FIELD_DATA = [0x64, 0x61, 0x74, 0x61];           // "data"
var FIELD_EVENT = [0x65, 0x76, 0x65, 0x6e, 0x74];    // "event"
var FIELD_ID = [0x69, 0x64];                         // "id"
var FIELD_RETRY = [0x72, 0x65, 0x74, 0x72, 0x79];    // "retry"

/**
 * createParser({ onEvent, onRetry?, onComment?, exactLineBreaks? }) -> { feed(chunk), end(), lastEventId() }
 *
 * onEvent({ event, data, id }) for every dispatched event: `event` defaults to
 * "message", `id` is the last event id in effect. onRetry(ms) for each valid `retry:`.
 * onComment(text) for each comment line (`: text`, one space after the colon removed),
 * in stream order with the events.
 * exactLineBreaks: the event also gets `rawData`, its data lines joined by the very line
 * break that ended each one in the stream (CR, LF or CRLF, also when a CRLF is split
 * across chunks) instead of LF; the last data line's own line break is not part of it.
 * A server that writes each line break of a text as the terminator of its data line
 * (chatrelay's format=text) can thus send CR and CRLF intact.
 * An exception thrown by a callback is rethrown by feed() once the whole chunk has
 * been parsed, so the parser stays consistent (no line is parsed twice or lost).
 */
function createParser(options) {
  var onEvent = options && options.onEvent;
  var onRetry = options && options.onRetry;
  var onComment = options && options.onComment;
  var exact = !!(options && options.exactLineBreaks);
  if (typeof onEvent !== 'function') throw new TypeError('createParser: onEvent is required');
  var decode = lineDecoder();

  var parts = [];       // pieces of the unfinished last line (never contain CR or LF)
  var head = null;      // the first bytes, while they may still be a BOM
  var afterCR = false;  // the previous chunk ended with CR: an LF first in the next one is part of it
  var atStart = true;   // no byte after a (possible) BOM seen yet
  var eventType = '';
  var dataLines = [];
  var dataBreaks = [];  // exactLineBreaks: the line break that ended each data line
  var lastId = '';
  var lineWasData = false; // the line just processed was a data line (its CR may turn out to be a CRLF)

  function joinExact() {
    var out = '';
    for (var k = 0; k < dataLines.length; k++) out += (k ? dataBreaks[k - 1] : '') + dataLines[k];
    return out;
  }

  function dispatch() {
    var event = null;
    if (dataLines.length) {
      event = { event: eventType || 'message', data: dataLines.join('\n'), id: lastId };
      if (exact) event.rawData = joinExact();
    }
    eventType = '';
    dataLines = [];
    dataBreaks = [];
    if (event) onEvent(event); // state reset first: a throwing callback cannot leave stale data
  }

  // Field names are compared as bytes; only values are decoded. `lineBreak`: what ended the line.
  function processLine(line, lineBreak) {
    var n = line.length;
    lineWasData = false;
    if (n === 0) { dispatch(); return; }
    if (line[0] === COLON) { // a comment
      if (onComment) onComment(decode(line.subarray(n > 1 && line[1] === SPACE ? 2 : 1, n)));
      return;
    }
    var colon = 0;
    while (colon < n && line[colon] !== COLON) colon += 1;
    var from = colon < n ? colon + 1 : n;
    if (from < n && line[from] === SPACE) from += 1; // one space after the colon
    var value = decode(line.subarray(from, n));

    if (colon === 4 && startsWith(line, FIELD_DATA)) {
      dataLines.push(value);
      dataBreaks.push(lineBreak);
      lineWasData = true;
    } else if (colon === 5 && startsWith(line, FIELD_EVENT)) {
      eventType = value;
    } else if (colon === 2 && startsWith(line, FIELD_ID)) {
      if (value.indexOf('\u0000') === -1) lastId = value;
    } else if (colon === 5 && startsWith(line, FIELD_RETRY)) {
      if (/^[0-9]+$/.test(value) && onRetry) onRetry(parseInt(value, 10));
    }
    // any other field is ignored
  }

  function feed(chunk) {
    var bytes = toBytes(chunk);
    if (!bytes.length) return;
    if (atStart) {
      // Drop one BOM at the very start, once three bytes tell whether there is one.
      if (head) {
        var merged = new Uint8Array(head.length + bytes.length);
        merged.set(head, 0);
        merged.set(bytes, head.length);
        bytes = merged;
        head = null;
      }
      var k = 0;
      while (k < 3 && k < bytes.length && bytes[k] === BOM[k]) k += 1;
      if (k < 3 && k === bytes.length) { head = bytes.slice(0); return; }
      atStart = false;
      if (k === 3) bytes = bytes.subarray(3);
      if (!bytes.length) return;
    }
    var lineStart = 0;
    if (afterCR) {
      afterCR = false;
      if (bytes[0] === LF) {
        lineStart = 1;
        // The CR that ended the previous chunk was half of a CRLF.
        if (lineWasData) dataBreaks[dataBreaks.length - 1] = '\r\n';
      }
    }
    var thrown = null;
    for (var i = lineStart; i < bytes.length; i++) {
      var b = bytes[i];
      if (b !== LF && b !== CR) continue;
      var line = bytes.subarray(lineStart, i);
      if (parts.length) {
        parts.push(line);
        line = concat(parts);
        parts = [];
      }
      var lineBreak = '\n';
      if (b === CR) {
        lineBreak = '\r';
        if (i + 1 < bytes.length) { if (bytes[i + 1] === LF) { i += 1; lineBreak = '\r\n'; } }
        else afterCR = true;
      }
      lineStart = i + 1;
      try {
        processLine(line, lineBreak);
      } catch (e) {
        if (!thrown) thrown = { error: e }; // finish the chunk first, so no line is parsed twice or lost
      }
    }
    // Copied: the runtime may reuse the chunk's buffer.
    if (lineStart < bytes.length) parts.push(bytes.slice(lineStart));
    if (thrown) throw thrown.error;
  }

  /** The stream ended: an event without its terminating blank line is discarded. */
  function end() {
    parts = [];
    head = null;
    afterCR = false;
    eventType = '';
    dataLines = [];
    dataBreaks = [];
    lineWasData = false;
  }

  return { feed: feed, end: end, lastEventId: function () { return lastId; } };
}

module.exports = { createParser: createParser, decodeUtf8: decodeUtf8 };
