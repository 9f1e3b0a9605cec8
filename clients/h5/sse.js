// A byte-level Server-Sent Events parser (WHATWG "event stream interpretation").
//
// Lines are split on CR, LF or CRLF in the raw bytes (a CRLF may straddle two network
// chunks), and each complete line is decoded on its own: CR and LF never occur inside a
// multi-byte UTF-8 sequence, so a character split across chunks is never mangled.
// Comments (":" lines) are reported separately so a caller can use them as keep-alives.

const LF = 0x0a;
const CR = 0x0d;

export class SSEParser {
  constructor() {
    this.decoder = new TextDecoder('utf-8');
    this.pending = new Uint8Array(0); // bytes of an unfinished line
    this.skipLF = false; // the previous chunk ended with CR: a leading LF belongs to it
    this.firstLine = true;
    this.lastId = '';
    this.reset();
  }

  reset() {
    this.data = [];
    this.eventType = '';
  }

  /** Feed raw bytes; returns the events completed by them, in order. */
  feed(chunk) {
    const out = [];
    let bytes = chunk;
    if (this.pending.length) {
      bytes = new Uint8Array(this.pending.length + chunk.length);
      bytes.set(this.pending, 0);
      bytes.set(chunk, this.pending.length);
    }
    let start = 0;
    if (this.skipLF && bytes.length && bytes[0] === LF) start = 1;
    this.skipLF = false;
    for (let i = start; i < bytes.length; i++) {
      const b = bytes[i];
      if (b !== LF && b !== CR) continue;
      this.line(bytes.subarray(start, i), out);
      if (b === CR) {
        if (i + 1 < bytes.length) {
          if (bytes[i + 1] === LF) i++;
        } else {
          this.skipLF = true;
        }
      }
      start = i + 1;
    }
    this.pending = bytes.slice(start);
    return out;
  }

  /** The stream ended: an unterminated last event is discarded, as the spec says. */
  end() {
    this.pending = new Uint8Array(0);
    this.reset();
    return [];
  }

  line(bytes, out) {
    let text = this.decoder.decode(bytes, { stream: true });
    if (this.firstLine) {
      this.firstLine = false;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    if (text === '') {
      if (this.data.length) {
        out.push({ type: 'event', event: this.eventType || 'message', data: this.data.join('\n'), id: this.lastId });
      }
      this.reset();
      return;
    }
    if (text[0] === ':') {
      out.push({ type: 'comment', text: text.slice(1).trimStart() });
      return;
    }
    const colon = text.indexOf(':');
    const field = colon === -1 ? text : text.slice(0, colon);
    let value = colon === -1 ? '' : text.slice(colon + 1);
    if (value[0] === ' ') value = value.slice(1);
    if (field === 'data') this.data.push(value);
    else if (field === 'event') this.eventType = value;
    else if (field === 'id' && value.indexOf('\0') === -1) this.lastId = value;
    // "retry" is ignored: this client never reconnects a POST on its own.
  }
}

/**
 * Read an SSE response body to its end, calling onItem({type:'event'|'comment', ...})
 * for each item. Rejects on a network error; an idle watchdog aborts via onIdle when no
 * byte arrives for idleMs (a dropped mobile network may otherwise never error).
 */
export async function readEventStream(response, onItem, { idleMs = 45000, onIdle } = {}) {
  const reader = response.body.getReader();
  const parser = new SSEParser();
  let timer = null;
  const arm = () => {
    if (!onIdle) return;
    clearTimeout(timer);
    timer = setTimeout(onIdle, idleMs);
  };
  try {
    arm();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      arm();
      for (const item of parser.feed(value)) onItem(item);
    }
    parser.end();
  } finally {
    clearTimeout(timer);
    try {
      reader.releaseLock();
    } catch (_) {
      /* already released */
    }
  }
}
