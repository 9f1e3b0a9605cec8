'use strict';
// A model of the chatrelay server (docs/api.md and the request-id protocol) for the platform
// fakes: turns stored by requestId, the JSON and text wire formats, resume, replay of a
// retried requestId, stop by message id or by request id (also before the turn exists), and
// the checkpointed turn that GET /v1/requests/{id} returns (it grows by `perPoll` deltas a poll).

const codePoints = (s) => Array.from(s).length;

/** format=text data lines: each ends with the line break that followed it in the text, the last with LF. */
function textDataLines(delta) {
  const parts = delta.split(/(\r\n|\r|\n)/);
  let out = '';
  for (let i = 0; i < parts.length; i += 2) out += 'data: ' + parts[i] + (i + 1 < parts.length ? parts[i + 1] : '\n');
  return out;
}

function createServer(script = {}) {
  const deltas = script.deltas || ['Hello', ', 世界', '!\r\n', 'line\rtwo', '\n\n😀🚀', ' done.'];
  const ending = script.ending || { kind: 'stop' }; // {kind:'stop'} | {kind:'error', code} | {kind:'blocked', offset}
  const perPoll = script.perPoll || 2;
  const token = script.token || 'tkn';
  const turns = new Map();       // requestId -> turn
  const byMessage = new Map();   // messageId -> turn
  const stopsBefore = new Set(); // request ids stopped before their turn existed
  const log = [];
  const endListeners = new Map();
  let next = 1;

  function json(status, body, headers = {}) {
    return { status, headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) };
  }

  function fullAnswer() { return deltas.join(''); }

  function finishTurn(turn, status, finishReason, errorCode) {
    if (turn.status !== 'streaming') return;
    turn.status = status;
    turn.finishReason = finishReason;
    turn.errorCode = errorCode || null;
    (endListeners.get(turn.requestId) || []).splice(0).forEach((fn) => fn());
  }

  /** The ending the stream reports for a turn that is over (or will be, for a live stream). */
  function endingOf(turn) {
    if (turn.status === 'stopped') return { finishReason: 'stopped' };
    if (ending.kind === 'error') return { error: { code: ending.code, message: 'the provider went away' }, finishReason: 'error' };
    if (ending.kind === 'blocked') {
      return { error: { code: 'answer_blocked', message: 'refused', offset: ending.offset }, finishReason: 'blocked' };
    }
    return { finishReason: 'stop', usage: { promptTokens: 3, completionTokens: deltas.length, totalTokens: 3 + deltas.length } };
  }

  /** The stored answer: what was generated, cut where the content check cut it. */
  function storedAnswer(turn) {
    const produced = deltas.slice(0, turn.produced).join('');
    if (ending.kind === 'blocked' && turn.produced >= deltas.length) return Array.from(produced).slice(0, ending.offset).join('');
    return produced;
  }

  function turnBody(turn) {
    return { messageId: turn.messageId, conversationId: turn.conversationId, question: turn.question,
      answer: storedAnswer(turn), status: turn.status, finishReason: turn.finishReason || null,
      errorCode: turn.errorCode || null, model: 'default', requestId: turn.requestId,
      usage: turn.status === 'complete' ? endingOf(turn).usage : null };
  }

  function createTurn(requestId, question) {
    const n = next++;
    const turn = { requestId, question, messageId: `m-${n}`, conversationId: `c-${n}`, status: 'streaming', produced: 0 };
    turns.set(requestId, turn);
    byMessage.set(turn.messageId, turn);
    if (stopsBefore.has(requestId)) { turn.produced = 0; finishTurn(turn, 'stopped', 'stopped'); }
    return turn;
  }

  /** The SSE body for a turn from offset `after` (replay: 0). A live turn streams to its end. */
  /** The live turn reached its end: stored as complete, blocked or failed. */
  function generated(turn) {
    turn.produced = deltas.length;
    if (ending.kind === 'stop') finishTurn(turn, 'complete', 'stop');
    else if (ending.kind === 'blocked') finishTurn(turn, 'blocked', 'blocked', 'answer_blocked');
    else finishTurn(turn, 'failed', 'error', ending.code);
  }

  function streamBody(turn, after, format, whole) {
    const meta = { conversationId: turn.conversationId, messageId: turn.messageId, model: 'default' };
    let out = ': stream open\n\n';
    out += format === 'text' ? `: meta ${JSON.stringify(meta)}\n\n` : `event: meta\ndata: ${JSON.stringify(meta)}\n\n`;
    const live = turn.status === 'streaming';
    const upTo = live ? deltas.length : turn.produced;
    const pieces = [];
    let at = 0;
    for (const d of deltas.slice(0, upTo)) {
      const start = at;
      at += codePoints(d);
      if (at <= after) continue;
      pieces.push({ delta: Array.from(d).slice(Math.max(0, after - start)).join(''), id: at });
    }
    if (whole && pieces.length) pieces.splice(0, pieces.length, { delta: pieces.map((p) => p.delta).join(''), id: at });
    for (const p of pieces) {
      out += `id: ${p.id}\n` + (format === 'text' ? textDataLines(p.delta) + '\n' : `data: ${JSON.stringify({ delta: p.delta })}\n\n`);
    }
    if (live) turn.produced = deltas.length; // the whole answer is in this body
    const end = endingOf(turn);
    if (end.error) out += format === 'text' ? `: error ${JSON.stringify(end.error)}\n\n` : `event: error\ndata: ${JSON.stringify(end.error)}\n\n`;
    const done = { finishReason: end.finishReason, usage: end.usage || null };
    out += format === 'text' ? `: done ${JSON.stringify(done)}\n\n` : `event: done\ndata: ${JSON.stringify(done)}\n\n`;
    return out + 'data: [DONE]\n\n';
  }

  /** delivered(): the platform fake handed the whole body over, so the live turn has ended. */
  function sse(turn, body) {
    return { status: 200, headers: { 'content-type': 'text/event-stream; charset=utf-8',
      'x-conversation-id': turn.conversationId, 'x-message-id': turn.messageId }, body,
    delivered: () => { if (turn.status === 'streaming') generated(turn); } };
  }

  /**
   * req: { method, url, headers, data } -> { status, headers, body (string) }. With `live` (a
   * runtime that gets the body only at the end) a new turn is generated while it is polled:
   * the answer is then { deferred: true, later() -> body } once the turn ended (onTurnEnd).
   */
  function handle(req, { live = false } = {}) {
    const url = new URL(req.url);
    const route = `${req.method} ${url.pathname}`;
    log.push({ route, search: url.search, data: req.data });
    const headers = req.headers || {};
    const auth = headers.Authorization || headers.authorization;
    if (auth !== `Bearer ${token}`) return json(401, { code: 'unauthorized', message: 'missing or invalid token' });
    const format = url.searchParams.get('format') === 'text' ? 'text' : 'json';
    let m;
    if (route === 'POST /v1/chat/stream') {
      const body = typeof req.data === 'string' ? JSON.parse(req.data) : req.data || {};
      if (typeof body.prompt !== 'string' || !body.prompt || /[\u0000-\u0008\u000b\u000c\u000e-\u001f]/.test(body.prompt)) {
        return json(422, { code: 'invalid_request', message: 'prompt: 不能为空，也不能有控制字符', field: 'prompt' });
      }
      if (!/^[0-9A-Za-z_-]{1,64}$/.test(body.requestId || '')) {
        return json(422, { code: 'invalid_request', message: 'bad requestId', field: 'requestId' });
      }
      const turn = turns.get(body.requestId) || createTurn(body.requestId, body.prompt);
      if (live && turn.status === 'streaming') {
        return { ...sse(turn, ''), deferred: true, requestId: turn.requestId, later: () => streamBody(turn, 0, format, false) };
      }
      return sse(turn, streamBody(turn, 0, format, false));
    }
    if ((m = /^GET \/v1\/messages\/([^/]+)\/stream$/.exec(route))) {
      const turn = byMessage.get(m[1]);
      if (!turn) return json(404, { code: 'not_found', message: 'no such message' });
      const after = Number(headers['Last-Event-ID'] || url.searchParams.get('after') || 0);
      return sse(turn, streamBody(turn, after, format, true));
    }
    if ((m = /^GET \/v1\/requests\/([^/]+)$/.exec(route))) {
      const turn = turns.get(m[1]);
      if (!turn) return json(404, { code: 'not_found', message: 'no such request' });
      if (turn.status === 'streaming') {
        turn.produced = Math.min(deltas.length, turn.produced + perPoll);
        if (turn.produced === deltas.length) generated(turn);
      }
      return json(200, turnBody(turn));
    }
    if ((m = /^POST \/v1\/(messages|requests)\/([^/]+)\/stop$/.exec(route))) {
      const turn = m[1] === 'messages' ? byMessage.get(m[2]) : turns.get(m[2]);
      if (!turn && m[1] === 'messages') return json(404, { code: 'not_found', message: 'no such message' });
      if (!turn) stopsBefore.add(m[2]);
      else finishTurn(turn, 'stopped', 'stopped');
      return json(202, { messageId: turn ? turn.messageId : null, status: turn ? turn.status : 'stopped', stopRequested: true });
    }
    return json(404, { code: 'not_found', message: `no route ${route}` });
  }

  return {
    handle, turns, log, stopsBefore,
    answer: fullAnswer(),
    /** The answer a client must end with (blocked: cut at the offset). */
    expectedText() { return ending.kind === 'blocked' ? Array.from(fullAnswer()).slice(0, ending.offset).join('') : fullAnswer(); },
    /** fn() once the turn of requestId has ended (for runtimes whose body arrives at the end). */
    onTurnEnd(requestId, fn) {
      const turn = turns.get(requestId);
      if (turn && turn.status !== 'streaming') { fn(); return; }
      if (!endListeners.has(requestId)) endListeners.set(requestId, []);
      endListeners.get(requestId).push(fn);
    },
  };
}

module.exports = { createServer, textDataLines, codePoints };
