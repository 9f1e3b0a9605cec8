// Types for adapters.js: one transport per mini-program runtime.

export interface AdapterRequest {
  url: string;
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  header: Record<string, string>;
  data?: unknown;
  timeout?: number;
}

export interface AdapterResponse {
  statusCode: number;
  data: unknown;
  headers?: Record<string, string>;
}

export interface StreamSink {
  head(statusCode?: number, headers?: Record<string, string>): void;
  bytes(chunk: ArrayBuffer | ArrayBufferView | string): void;
  event(event: { event: string; data: string; id?: string }): void;
  end(response: AdapterResponse): void;
  fail(errMsg: string, response?: AdapterResponse): void;
}

export interface StreamHandle {
  abort(): void;
  /** false: the body arrives only at end(); the client polls the turn meanwhile. */
  streaming: boolean;
}

export interface Adapter {
  name: string;
  stream(request: AdapterRequest, sink: StreamSink): StreamHandle;
  /** Resolves with any HTTP answer; rejects with {errMsg} (network) or an AdapterResponse (HTTP error). */
  request(request: AdapterRequest): Promise<AdapterResponse>;
  /** Douyin's EventSource: only the JSON wire format can be parsed by the runtime. */
  eventsOnly?(): boolean;
}

/** Any object with a wx-compatible request(): wx, qq, uni (mp-weixin), Taro.miniGlobal. */
export interface WxLike {
  request(options: Record<string, unknown>): unknown;
}

export function wechat(wx: WxLike): Adapter;
export function uniApp(uni: WxLike): Adapter;
export function taro(Taro: WxLike & { miniGlobal?: WxLike }): Adapter;
export function douyin(tt: WxLike & { createEventSource?(params: Record<string, unknown>, timeout?: number): unknown }): Adapter;
export function alipay(my: { request(options: Record<string, unknown>): unknown }): Adapter;
/** The adapter for the runtime's globals: wx, tt, my, uni (in that order); null when none. */
export function detect(scope?: Record<string, unknown>): Adapter | null;
