// Types for chatrelay.js: streamed chatrelay answers in mini-programs (docs/api.md).
import type { Adapter, WxLike } from './adapters';

export * as adapters from './adapters';

export interface Usage { promptTokens?: number; completionTokens?: number; totalTokens?: number }

export interface Meta { conversationId?: string; messageId?: string; model?: string }

export interface Done {
  /** The vendor's (`stop`, `length`, ...) or `stopped`, `length_cap`, `time_cap`, `interrupted`, ...; null when unknown. */
  finishReason: string | null;
  usage: Usage | null;
  text: string;
}

export interface ChatError {
  /** The server's code (`invalid_request`, `upstream_disconnected`, `answer_blocked`, ...) or the kit's
   * (`network_error`, `stream_ended`, `client_idle_timeout`, `bad_response`, `http_<status>`). */
  code: string;
  message: string;
  status?: number;
  field?: string;
  /** answer_blocked: the answer's safe length in code points; `text` is already cut there. */
  offset?: number;
  finishReason?: string;
  usage?: Usage | null;
  /** The (partial) answer. */
  text: string;
}

export interface ConnectionOptions {
  /** Server base URL, e.g. 'https://api.example.com'. */
  url: string;
  token?: string;
  /** A platform adapter (adapters.wechat(wx), uniApp(uni), taro(Taro), douyin(tt), alipay(my)). */
  adapter?: Adapter;
  /** Or a wx-like object (wx, uni, Taro); default: the runtime's global wx / tt / my / uni. */
  wx?: WxLike;
}

export interface StreamChatOptions extends ConnectionOptions {
  token: string;
  prompt: string;
  conversationId?: string | null;
  model?: string;
  /** Idempotency key, [0-9A-Za-z_-]{1,64}; generated (`mp-<base36 time>-<random>`) when absent. */
  requestId?: string;
  terminal?: string;
  window?: number;
  /** 'json' (default) or 'text'; Douyin's EventSource always uses json on the wire. */
  format?: 'json' | 'text';
  onMeta?(meta: Meta): void;
  /** offset: the answer's length in code points so far. */
  onDelta?(delta: string, textSoFar: string, offset: number): void;
  onReasoning?(delta: string, reasoningSoFar: string): void;
  onDone?(done: Done): void;
  onError?(error: ChatError): void;
  onHeaders?(head: { statusCode?: number; header?: Record<string, string> }): void;
  /** 30000 */
  idleTimeoutMs?: number;
  /** 10000; used only when shorter than idleTimeoutMs. */
  connectTimeoutMs?: number;
  /** 600000 */
  requestTimeoutMs?: number;
  /** 3 */
  maxResumes?: number;
  /** 100 */
  endGraceMs?: number;
  /** 1000: polling interval where the runtime cannot stream. */
  pollIntervalMs?: number;
  stopUrl?: string | ((messageId: string) => string);
  requestStopUrl?: string | ((requestId: string) => string);
  setTimeout?: (fn: () => void, ms: number) => unknown;
  clearTimeout?: (id: unknown) => void;
}

export interface StopAnswer { messageId: string | null; status: string; stopRequested: true }

export interface ChatHandle {
  /** The requestId in use (pass it again to resume the same turn). */
  readonly requestId: string;
  /** Abort, tell the server, report onDone({finishReason: 'stopped'}); null when the call failed. */
  stop(): Promise<StopAnswer | null>;
}

export interface Turn {
  messageId: string;
  conversationId: string;
  question: string;
  answer: string;
  reasoning?: string;
  status: 'streaming' | 'complete' | 'stopped' | 'failed' | 'truncated' | 'blocked';
  model?: string;
  finishReason?: string | null;
  errorCode?: string | null;
  usage?: Usage | null;
  useful?: -1 | 0 | 1;
  requestId?: string;
  [key: string]: unknown;
}

export interface Conversation {
  conversationId: string; title: string; createdAt: string; updatedAt: string; turnCount: number; model?: string;
}

export interface Page<T> { items: T[]; nextCursor: string | null }

export function streamChat(options: StreamChatOptions): ChatHandle;
export function newRequestId(): string;
export function devLogin(options: ConnectionOptions, userId: string): Promise<{ token: string; tokenType: 'Bearer'; expiresIn: number }>;
export function listConversations(options: ConnectionOptions, params?: { limit?: number; cursor?: string }): Promise<Page<Conversation>>;
export function listMessages(options: ConnectionOptions, conversationId: string, params?: { limit?: number; cursor?: string }): Promise<Page<Turn>>;
export function getMessage(options: ConnectionOptions, messageId: string): Promise<Turn>;
export function getRequest(options: ConnectionOptions, requestId: string): Promise<Turn>;
export function setFeedback(options: ConnectionOptions, messageId: string, useful: -1 | 0 | 1): Promise<{ messageId: string; useful: number }>;
export function deleteConversation(options: ConnectionOptions, conversationId: string): Promise<null>;
export function stopMessage(options: ConnectionOptions, messageId: string): Promise<StopAnswer>;
export function stopRequest(options: ConnectionOptions, requestId: string): Promise<StopAnswer>;

export interface Client {
  streamChat(options: Omit<StreamChatOptions, 'url' | 'token' | 'adapter' | 'wx'>): ChatHandle;
  listConversations(params?: { limit?: number; cursor?: string }): Promise<Page<Conversation>>;
  listMessages(conversationId: string, params?: { limit?: number; cursor?: string }): Promise<Page<Turn>>;
  getMessage(messageId: string): Promise<Turn>;
  getRequest(requestId: string): Promise<Turn>;
  setFeedback(messageId: string, useful: -1 | 0 | 1): Promise<{ messageId: string; useful: number }>;
  deleteConversation(conversationId: string): Promise<null>;
  stopMessage(messageId: string): Promise<StopAnswer>;
  stopRequest(requestId: string): Promise<StopAnswer>;
}

export function createClient(config: ConnectionOptions & { token: string }): Client;
