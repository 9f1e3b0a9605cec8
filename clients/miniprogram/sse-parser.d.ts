// Types for sse-parser.js: a byte-level SSE parser for mini-program runtimes.

export interface SseEvent {
  /** The `event:` field; "message" when absent. */
  event: string;
  /** The data lines joined with LF (WHATWG rules). */
  data: string;
  /** The last event id in effect. */
  id: string;
  /** With `exactLineBreaks`: the data lines joined by the line break that ended each (CR, LF or CRLF). */
  rawData?: string;
}

export interface ParserOptions {
  onEvent(event: SseEvent): void;
  /** Each valid `retry:` value, in ms. */
  onRetry?(ms: number): void;
  /** Each comment line (`: text`), one space after the colon removed, in stream order. */
  onComment?(text: string): void;
  /** Add `rawData` to each event (see SseEvent.rawData). */
  exactLineBreaks?: boolean;
}

export interface Parser {
  /** A piece of the body; it may split lines and UTF-8 characters anywhere. */
  feed(chunk: ArrayBuffer | ArrayBufferView): void;
  /** The stream ended: an event without its terminating blank line is discarded. */
  end(): void;
  lastEventId(): string;
}

export function createParser(options: ParserOptions): Parser;

/** UTF-8 bytes to a string, U+FFFD for each maximal invalid subpart (as TextDecoder does). */
export function decodeUtf8(bytes: Uint8Array | ArrayLike<number>): string;
