// The chat page: one conversation view, streamed answers, history from the server.
import { Api, ApiError, randomId, store, tokenSubject } from './api.js';
import { inMiniProgram, loadBridge, navigateBack, postAnswer } from './bridge.js';
import { renderMarkdown } from './markdown.js';
import { readEventStream } from './sse.js';

const $ = (id) => document.getElementById(id);
const api = new Api('');
const NEAR_BOTTOM_PX = 80;
const RESUME_ATTEMPTS = 3;

const STATUS_LABELS = {
  streaming: '生成中',
  stopped: '已停止',
  failed: '出错了',
  truncated: '已截断',
  blocked: '已拦截',
};
const ERROR_MESSAGES = {
  network_error: '网络中断，回答未完成',
  unauthorized: '登录已失效，请返回后重新进入',
  upstream_unavailable: '模型服务暂时不可用',
  upstream_rate_limited: '请求太频繁，请稍后再试',
  upstream_timeout: '模型响应超时',
  upstream_disconnected: '模型连接中断',
  interrupted: '生成被中断',
  not_saved: '回答未能保存',
  question_blocked: '该问题未通过内容安全检查',
  answer_blocked: '回答的后续内容未通过内容安全检查，已截断',
};

const els = {
  messages: $('messages'),
  thread: $('thread'),
  empty: $('empty'),
  input: $('input'),
  send: $('send'),
  stop: $('stop'),
  composer: $('composer'),
  title: $('title'),
  drawer: $('drawer'),
  conversations: $('conversations'),
  conversationsEmpty: $('conversations-empty'),
  notice: $('notice'),
  toBottom: $('to-bottom'),
  back: $('back'),
};

const state = {
  conversationId: null,
  turns: [], // TurnView, oldest first
  active: null, // the running stream, if any
  loadSeq: 0,
};

// ---------------------------------------------------------------- scrolling

function nearBottom() {
  const m = els.messages;
  return m.scrollHeight - m.scrollTop - m.clientHeight <= NEAR_BOTTOM_PX;
}

function scrollToBottom() {
  els.messages.scrollTop = els.messages.scrollHeight;
}

/** Run a DOM change; keep the view pinned to the bottom only if it already was. */
function withStickyScroll(change) {
  const stick = nearBottom();
  change();
  if (stick) scrollToBottom();
  updateToBottom();
}

function updateToBottom() {
  els.toBottom.hidden = nearBottom();
}

// ---------------------------------------------------------------- notices

let noticeTimer = null;
function notify(text) {
  els.notice.textContent = text;
  els.notice.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => {
    els.notice.hidden = true;
  }, 3500);
}

// ---------------------------------------------------------------- icons

const SVG_NS = 'http://www.w3.org/2000/svg';
const ICONS = {
  up: 'M7 10v10M7 10l4-7c1.5 0 2.5 1 2.5 2.5V9h5a2 2 0 0 1 2 2.3l-1.2 7A2 2 0 0 1 17.3 20H7M3 10h4v10H3z',
  down: 'M17 14V4M17 14l-4 7c-1.5 0-2.5-1-2.5-2.5V15h-5a2 2 0 0 1-2-2.3l1.2-7A2 2 0 0 1 6.7 4H17M21 14h-4V4h4z',
  regen: 'M20 11a8 8 0 1 0-2.3 5.7M20 5v6h-6',
};

function icon(name) {
  const svg = document.createElementNS(SVG_NS, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('aria-hidden', 'true');
  const path = document.createElementNS(SVG_NS, 'path');
  path.setAttribute('d', ICONS[name]);
  svg.appendChild(path);
  return svg;
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text != null) node.textContent = text;
  return node;
}

// ---------------------------------------------------------------- one turn on screen

class TurnView {
  constructor({ question, messageId = null, answer = '', reasoning = '', status = 'streaming', useful = 0,
    errorCode = null }) {
    this.question = question;
    this.messageId = messageId;
    this.answer = answer;
    this.reasoning = reasoning || '';
    this.status = status;
    this.useful = useful || 0;
    this.renderQueued = false;

    this.root = el('section', 'turn');
    const q = el('div', 'q');
    q.appendChild(el('div', 'bubble', question)); // textContent: never parsed
    const a = el('div', 'a');
    this.reasoningBox = el('details', 'reasoning');
    this.reasoningBox.appendChild(el('summary', null, '思考过程'));
    this.reasoningText = el('div', 'reasoning-text');
    this.reasoningBox.appendChild(this.reasoningText);
    this.answerEl = el('div', 'answer md');
    this.typing = el('div', 'typing');
    this.typing.append(el('i'), el('i'), el('i'));
    this.errorEl = el('div', 'error');
    const row = el('div', 'meta-row');
    row.appendChild(el('span', 'ai-label', 'AI 生成'));
    this.badge = el('span', 'badge');
    row.appendChild(this.badge);
    row.appendChild(el('span', 'spacer'));
    this.regen = el('button', 'act regen');
    this.regen.type = 'button';
    this.regen.setAttribute('aria-label', '重新生成');
    this.regen.append(icon('regen'), el('span', null, '重新生成'));
    this.like = el('button', 'act like');
    this.like.type = 'button';
    this.like.setAttribute('aria-label', '有帮助');
    this.like.appendChild(icon('up'));
    this.dislike = el('button', 'act dislike');
    this.dislike.type = 'button';
    this.dislike.setAttribute('aria-label', '没帮助');
    this.dislike.appendChild(icon('down'));
    row.append(this.regen, this.like, this.dislike);
    a.append(this.reasoningBox, this.answerEl, this.typing, this.errorEl, row);
    this.root.append(q, a);

    this.like.addEventListener('click', () => rate(this, 1));
    this.dislike.addEventListener('click', () => rate(this, -1));
    this.regen.addEventListener('click', () => regenerate(this));

    if (errorCode) this.setError(errorCode);
    this.render();
    this.update();
  }

  append(delta) {
    this.answer += delta;
    this.queueRender();
  }

  /** Keep the first `offset` characters (code points, like the stream's ids) of the answer. */
  cutAnswer(offset) {
    this.answer = Array.from(this.answer).slice(0, offset).join('');
    this.queueRender();
  }

  appendReasoning(delta) {
    this.reasoning += delta;
    this.queueRender();
  }

  queueRender() {
    if (this.renderQueued) return;
    this.renderQueued = true;
    requestAnimationFrame(() => {
      this.renderQueued = false;
      this.render();
    });
  }

  render() {
    withStickyScroll(() => {
      this.answerEl.innerHTML = renderMarkdown(this.answer); // escaped, see markdown.js
      this.reasoningText.textContent = this.reasoning;
      this.reasoningBox.hidden = !this.reasoning;
      this.typing.hidden = !(this.status === 'streaming' && !this.answer);
    });
  }

  setStatus(status) {
    this.status = status;
    this.render();
    this.update();
  }

  setError(code, message) {
    this.errorEl.textContent = ERROR_MESSAGES[code] || message || code;
    this.errorEl.hidden = false;
  }

  setUseful(value) {
    this.useful = value;
    this.update();
  }

  update() {
    const finished = this.status !== 'streaming';
    this.root.dataset.status = this.status;
    if (this.messageId) this.root.dataset.messageId = this.messageId;
    this.badge.textContent = STATUS_LABELS[this.status] || '';
    this.badge.hidden = !STATUS_LABELS[this.status];
    this.badge.className = `badge badge-${this.status}`;
    if (!this.errorEl.textContent) this.errorEl.hidden = true;
    const canRate = finished && !!this.messageId && !!this.answer;
    this.like.hidden = this.dislike.hidden = !canRate;
    this.like.setAttribute('aria-pressed', String(this.useful === 1));
    this.dislike.setAttribute('aria-pressed', String(this.useful === -1));
    const last = state.turns[state.turns.length - 1] === this;
    this.regen.hidden = !(finished && last && !state.active);
  }
}

function refreshTurns() {
  for (const view of state.turns) view.update();
}

function addTurn(data) {
  const view = new TurnView(data);
  state.turns.push(view);
  els.empty.hidden = true;
  withStickyScroll(() => els.thread.appendChild(view.root));
  refreshTurns();
  return view;
}

function clearThread() {
  state.turns = [];
  els.thread.textContent = '';
  els.empty.hidden = false;
  updateToBottom();
}

// ---------------------------------------------------------------- conversation id

function conversationKey() {
  return `chatrelay.conversation.${tokenSubject(api.token || '') || 'anon'}`;
}

function setConversation(id, title) {
  state.conversationId = id || null;
  store.set(conversationKey(), state.conversationId);
  if (title !== undefined) els.title.textContent = title || 'AI 助手';
}

// ---------------------------------------------------------------- streaming

const FINISH_STATUS = {
  stop: 'complete',
  length: 'complete',
  content_filter: 'complete',
  stopped: 'stopped',
  client_disconnected: 'stopped',
  error: 'failed',
  interrupted: 'failed',
  length_cap: 'truncated',
  time_cap: 'truncated',
  lambda_timeout: 'truncated',
  blocked: 'blocked',
};

function setBusy(busy) {
  els.send.hidden = busy;
  els.stop.hidden = !busy;
  els.stop.disabled = false;
  updateSend();
  refreshTurns();
}

function updateSend() {
  els.send.disabled = !!state.active || !els.input.value.trim();
}

/** Handle one SSE item of a chat or resume stream. */
function onStreamItem(run, item) {
  if (item.type !== 'event') return;
  const { view } = run;
  if (item.event === 'meta') {
    const meta = JSON.parse(item.data);
    run.messageId = view.messageId = meta.messageId;
    if (meta.conversationId && meta.conversationId !== state.conversationId) setConversation(meta.conversationId);
    view.update();
    if (run.stopRequested) requestServerStop(run);
  } else if (item.event === 'message') {
    if (item.data === '[DONE]') {
      run.finished = true;
      return;
    }
    const { delta } = JSON.parse(item.data);
    if (item.id && /^\d+$/.test(item.id)) run.offset = Number(item.id);
    if (delta) view.append(delta);
  } else if (item.event === 'reasoning') {
    view.appendReasoning(JSON.parse(item.data).delta || '');
  } else if (item.event === 'error') {
    const error = JSON.parse(item.data);
    // The content check refused text already shown: the server says where the safe part ends.
    if (error.code === 'answer_blocked' && Number.isInteger(error.offset)) {
      view.cutAnswer(error.offset);
      run.offset = Math.min(run.offset || 0, error.offset);
    }
    view.setError(error.code, error.message);
  } else if (item.event === 'done') {
    const done = JSON.parse(item.data);
    run.done = done;
    view.setStatus(FINISH_STATUS[done.finishReason] || 'complete');
  }
}

async function consume(run, response) {
  try {
    await readEventStream(response, (item) => onStreamItem(run, item), {
      onIdle: () => {
        run.idle = true;
        run.controller.abort();
      },
    });
  } catch (_) {
    /* a network error or our own abort: the caller decides from the run's flags */
  }
}

function requestServerStop(run) {
  if (run.stopSent || !run.messageId) return;
  run.stopSent = true;
  api.stop(run.messageId).catch(() => {});
  run.userAborted = true;
  run.controller.abort();
}

function stopActive() {
  const run = state.active;
  if (!run) return;
  run.stopRequested = true;
  els.stop.disabled = true;
  if (run.messageId) {
    requestServerStop(run);
  } else {
    // Wait (briefly) for the message id so the server can be told; abort regardless.
    setTimeout(() => {
      run.userAborted = true;
      run.controller.abort();
    }, 3000);
  }
}

/** Ask a question: a new request with a new requestId. A failed POST is never re-sent. */
async function ask(question) {
  if (state.active || !question.trim()) return;
  const view = addTurn({ question, status: 'streaming' });
  scrollToBottom();
  const run = { view, controller: new AbortController(), offset: 0, messageId: null };
  state.active = run;
  setBusy(true);
  const body = {
    prompt: question,
    conversationId: state.conversationId || undefined,
    requestId: randomId(),
    terminal: inMiniProgram() ? 'wx-webview' : 'h5',
  };
  try {
    let response;
    try {
      response = await api.openStream(body, run.controller.signal);
      if (response.status === 401 && (await api.relogin())) {
        // Refused before anything was stored: asking again is safe (same requestId).
        response = await api.openStream(body, run.controller.signal);
      }
    } catch (_) {
      if (!run.userAborted) view.setError('network_error');
      view.setStatus(run.userAborted ? 'stopped' : 'failed');
      return;
    }
    if (!response.ok) {
      const error = await response.json().catch(() => ({}));
      view.setError(error.code || 'http_error', error.message || `HTTP ${response.status}`);
      view.setStatus('failed');
      if (error.code === 'not_found' && body.conversationId) setConversation(null, 'AI 助手');
      return;
    }
    run.messageId = view.messageId = response.headers.get('X-Message-Id');
    const cid = response.headers.get('X-Conversation-Id');
    if (cid && cid !== state.conversationId) setConversation(cid, question);
    if (run.stopRequested) requestServerStop(run);
    await consume(run, response);
    await finishRun(run);
  } finally {
    state.active = null;
    setBusy(false);
  }
}

/** After a stream ended: done, stopped by the user, or dropped (then resume with GETs). */
async function finishRun(run) {
  const { view } = run;
  for (let attempt = 0; !run.done && !run.userAborted && run.messageId && attempt < RESUME_ATTEMPTS; attempt++) {
    await new Promise((r) => setTimeout(r, 800 * 2 ** attempt));
    if (run.userAborted) break;
    run.controller = new AbortController();
    run.idle = false;
    try {
      const response = await api.resumeStream(run.messageId, run.offset, run.controller.signal);
      if (!response.ok) break;
      await consume(run, response);
    } catch (_) {
      /* try again */
    }
  }
  if (run.done) {
    view.render();
    postAnswer(state.conversationId, run.messageId);
  } else if (run.userAborted) {
    view.setStatus('stopped');
  } else {
    view.setError('network_error');
    view.setStatus('failed');
  }
  view.update();
}

/** Follow a turn another stream is still generating (after a reload), by GET only. */
async function follow(view) {
  if (state.active) return;
  const run = { view, controller: new AbortController(), offset: [...view.answer].length, messageId: view.messageId };
  state.active = run;
  setBusy(true);
  try {
    await finishRun(run);
  } finally {
    state.active = null;
    setBusy(false);
  }
}

function regenerate(view) {
  if (state.active) return;
  ask(view.question);
}

// ---------------------------------------------------------------- feedback

async function rate(view, value) {
  if (!view.messageId) return;
  const previous = view.useful;
  const next = previous === value ? 0 : value;
  view.setUseful(next);
  try {
    const result = await api.feedback(view.messageId, next);
    view.setUseful(result.useful);
  } catch (error) {
    view.setUseful(previous);
    notify(error instanceof ApiError ? `评价失败：${error.message}` : '评价失败');
  }
}

// ---------------------------------------------------------------- history

async function loadConversation(id, title) {
  const seq = ++state.loadSeq;
  if (state.active) stopActive();
  let items;
  try {
    items = await api.allMessages(id);
  } catch (error) {
    if (seq !== state.loadSeq) return;
    if (error.status === 404) {
      setConversation(null, 'AI 助手');
      clearThread();
    } else {
      notify(`加载失败：${error.message}`);
    }
    return;
  }
  if (seq !== state.loadSeq) return;
  clearThread();
  setConversation(id, title !== undefined ? title : items.length ? items[0].question : 'AI 助手');
  for (const turn of items) {
    addTurn({
      question: turn.question,
      messageId: turn.messageId,
      answer: turn.answer || '',
      reasoning: turn.reasoning || '',
      status: turn.status,
      useful: turn.useful,
      errorCode: turn.status === 'failed' || turn.status === 'blocked' ? turn.errorCode : null,
    });
  }
  scrollToBottom();
  updateToBottom();
  const last = state.turns[state.turns.length - 1];
  if (last && last.status === 'streaming') follow(last);
}

function formatTime(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return '';
  const pad = (n) => String(n).padStart(2, '0');
  const today = new Date();
  if (date.toDateString() === today.toDateString()) return `${pad(date.getHours())}:${pad(date.getMinutes())}`;
  return `${date.getMonth() + 1}-${pad(date.getDate())}`;
}

async function openList() {
  els.drawer.hidden = false;
  els.conversations.textContent = '';
  els.conversationsEmpty.hidden = true;
  let data;
  try {
    data = await api.conversations();
  } catch (error) {
    notify(`加载会话失败：${error.message}`);
    return;
  }
  els.conversations.textContent = '';
  for (const c of data.items) {
    const li = el('li');
    const button = el('button', 'conversation');
    button.type = 'button';
    button.dataset.conversationId = c.conversationId;
    if (c.conversationId === state.conversationId) button.classList.add('current');
    button.append(el('span', 'conversation-title', c.title || '（无标题）'), el('span', 'conversation-time', formatTime(c.updatedAt)));
    button.addEventListener('click', () => {
      closeList();
      loadConversation(c.conversationId, c.title);
    });
    li.appendChild(button);
    els.conversations.appendChild(li);
  }
  els.conversationsEmpty.hidden = data.items.length > 0;
}

function closeList() {
  els.drawer.hidden = true;
}

function newChat() {
  if (state.active) stopActive();
  state.loadSeq++;
  setConversation(null, 'AI 助手');
  clearThread();
  els.input.focus();
}

// ---------------------------------------------------------------- composer

function autosize() {
  els.input.style.height = 'auto';
  els.input.style.height = `${Math.min(els.input.scrollHeight, 140)}px`;
}

function submit() {
  const question = els.input.value;
  if (!question.trim() || state.active) return;
  els.input.value = '';
  autosize();
  updateSend();
  ask(question);
}

function wire() {
  els.composer.addEventListener('submit', (event) => {
    event.preventDefault();
    submit();
  });
  els.input.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
      event.preventDefault();
      submit();
    }
  });
  els.input.addEventListener('input', () => {
    autosize();
    updateSend();
  });
  els.stop.addEventListener('click', stopActive);
  els.messages.addEventListener('scroll', updateToBottom, { passive: true });
  els.toBottom.addEventListener('click', () => {
    els.messages.scrollTo({ top: els.messages.scrollHeight, behavior: 'smooth' });
  });
  $('open-list').addEventListener('click', openList);
  $('close-list').addEventListener('click', closeList);
  $('scrim').addEventListener('click', closeList);
  $('new-chat').addEventListener('click', newChat);
  for (const chip of document.querySelectorAll('#suggestions .chip')) {
    chip.addEventListener('click', () => ask(chip.textContent));
  }
  if (inMiniProgram()) {
    els.back.hidden = false;
    els.back.addEventListener('click', () => {
      if (!navigateBack()) window.history.back();
    });
    loadBridge();
  }
}

async function main() {
  wire();
  const token = await api.login();
  if (!token) {
    els.input.disabled = true;
    els.input.placeholder = '未登录：请从小程序进入';
    notify('未登录：请从小程序进入');
    document.documentElement.dataset.ready = 'true';
    return;
  }
  const saved = store.get(conversationKey());
  if (saved) await loadConversation(saved);
  document.documentElement.dataset.ready = 'true';
}

main();
