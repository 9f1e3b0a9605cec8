// The chatrelay HTTP API (docs/api.md) as seen from the page: token, JSON calls, the stream.
//
// Token sources, in order: the URL fragment "#token=..." (a mini-program passes it to its
// <web-view src>; the fragment never reaches a server or a Referer), then localStorage,
// then - only if the server enables it (CHATRELAY_DEV_AUTH=1, `make dev`) - a dev login
// with a generated user id. The fragment is removed from the address bar once read.

const TOKEN_KEY = 'chatrelay.token';
const DEV_USER_KEY = 'chatrelay.devUser';

const memory = new Map();
export const store = {
  get(key) {
    try {
      return window.localStorage.getItem(key);
    } catch (_) {
      return memory.get(key) ?? null;
    }
  },
  set(key, value) {
    try {
      if (value == null) window.localStorage.removeItem(key);
      else window.localStorage.setItem(key, value);
    } catch (_) {
      if (value == null) memory.delete(key);
      else memory.set(key, value);
    }
  },
};

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.code = (body && body.code) || (status === 0 ? 'network_error' : 'http_error');
  }
}

export function randomId() {
  if (window.crypto && typeof window.crypto.randomUUID === 'function') return window.crypto.randomUUID();
  const bytes = new Uint8Array(16);
  window.crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** The token's subject (user id), read without verification: only to key local storage. */
export function tokenSubject(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const json = decodeURIComponent(
      Array.from(atob(part + '==='.slice((part.length + 3) % 4)), (c) => '%' + c.charCodeAt(0).toString(16).padStart(2, '0')).join(''),
    );
    return String(JSON.parse(json).sub || '');
  } catch (_) {
    return '';
  }
}

export class Api {
  constructor(base = '') {
    this.base = base;
    this.token = null;
    this.devAuthAvailable = null; // unknown until tried
  }

  /** Pick up a token: fragment, then storage, then dev login. Returns the token or null. */
  async login() {
    const fragment = new URLSearchParams(window.location.hash.replace(/^#/, ''));
    const fromHash = fragment.get('token');
    if (fromHash) {
      fragment.delete('token');
      const rest = fragment.toString();
      const url = window.location.pathname + window.location.search + (rest ? `#${rest}` : '');
      window.history.replaceState(null, '', url);
      this.setToken(fromHash);
      return this.token;
    }
    const stored = store.get(TOKEN_KEY);
    if (stored) {
      this.token = stored;
      return stored;
    }
    return this.devLogin();
  }

  setToken(token) {
    this.token = token;
    store.set(TOKEN_KEY, token);
  }

  /** POST /v1/auth/dev with a per-browser generated user id; null when the server has it off. */
  async devLogin() {
    if (this.devAuthAvailable === false) return null;
    let userId = store.get(DEV_USER_KEY);
    if (!userId) {
      userId = `h5-${randomId().replace(/-/g, '').slice(0, 16)}`;
      store.set(DEV_USER_KEY, userId);
    }
    let response;
    try {
      response = await fetch(`${this.base}/v1/auth/dev`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ userId }),
      });
    } catch (_) {
      return null;
    }
    if (!response.ok) {
      this.devAuthAvailable = false;
      return null;
    }
    this.devAuthAvailable = true;
    const body = await response.json();
    this.setToken(body.token);
    return this.token;
  }

  /** The stored token was refused: forget it and try the dev login once more. */
  async relogin() {
    this.token = null;
    store.set(TOKEN_KEY, null);
    return this.devLogin();
  }

  headers(extra = {}) {
    return { Authorization: `Bearer ${this.token}`, ...extra };
  }

  async request(method, path, body, retried = false) {
    let response;
    try {
      response = await fetch(`${this.base}${path}`, {
        method,
        headers: this.headers(body === undefined ? {} : { 'Content-Type': 'application/json' }),
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (_) {
      throw new ApiError(0, { message: '网络连接失败' });
    }
    if (response.status === 401 && !retried && (await this.relogin())) {
      return this.request(method, path, body, true);
    }
    if (response.status === 204) return null;
    let data = null;
    try {
      data = await response.json();
    } catch (_) {
      data = null;
    }
    if (!response.ok) throw new ApiError(response.status, data);
    return data;
  }

  conversations(limit = 30) {
    return this.request('GET', `/v1/conversations?limit=${limit}`);
  }

  async allMessages(conversationId, maxPages = 10) {
    const items = [];
    let cursor = null;
    for (let page = 0; page < maxPages; page++) {
      const query = `limit=50${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
      const data = await this.request('GET', `/v1/conversations/${encodeURIComponent(conversationId)}/messages?${query}`);
      items.push(...data.items);
      cursor = data.nextCursor;
      if (!cursor) break;
    }
    return items;
  }

  feedback(messageId, useful) {
    return this.request('PUT', `/v1/messages/${encodeURIComponent(messageId)}/feedback`, { useful });
  }

  stop(messageId) {
    return this.request('POST', `/v1/messages/${encodeURIComponent(messageId)}/stop`);
  }

  /** POST /v1/chat/stream: resolves with the Response once headers arrive. Never retried. */
  openStream(body, signal) {
    return fetch(`${this.base}/v1/chat/stream`, {
      method: 'POST',
      headers: this.headers({ 'Content-Type': 'application/json', Accept: 'text/event-stream' }),
      body: JSON.stringify(body),
      signal,
      cache: 'no-store',
    });
  }

  /** GET /v1/messages/{id}/stream?after=N: resume a turn (a GET: safe to repeat). */
  resumeStream(messageId, after, signal) {
    return fetch(`${this.base}/v1/messages/${encodeURIComponent(messageId)}/stream?after=${after}`, {
      headers: this.headers({ Accept: 'text/event-stream' }),
      signal,
      cache: 'no-store',
    });
  }
}
