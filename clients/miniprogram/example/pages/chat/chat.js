// Sample chat page: streamed answer, stop, conversation list, like / dislike.
const chatrelay = require('../../utils/chatrelay.js');

const RENDER_EVERY_MS = 50; // setData crosses threads: render the growing answer at most this often
// Endings of an answer that is not whole (docs/api.md finishReason values) ...
const CUT_REASONS = ['length', 'length_cap', 'time_cap', 'lambda_timeout', 'interrupted', 'client_disconnected', 'error'];
// ... and errors of the connection, not of the answer: the same turn can be asked for again.
const NETWORK_ERRORS = ['stream_ended', 'network_error', 'client_idle_timeout'];

/** fn(...) at most once per `ms`, the last call always delivered; flush() / cancel() end it. */
function throttle(fn, ms) {
  let timer = null;
  let last = -Infinity;
  let args = null;
  function run() {
    timer = null;
    last = Date.now();
    const pending = args;
    args = null;
    fn.apply(null, pending);
  }
  function throttled() {
    args = arguments;
    if (timer) return;
    const wait = ms - (Date.now() - last);
    if (wait <= 0) run();
    else timer = setTimeout(run, wait);
  }
  throttled.cancel = () => { if (timer) clearTimeout(timer); timer = null; args = null; };
  return throttled;
}

Page({
  data: { turns: [], conversations: [], input: '', streaming: false, showList: false },

  onLoad() {
    const app = getApp();
    this.conversationId = null;
    this.ready = app.ensureToken().then((token) => {
      this.api = chatrelay.createClient({ url: app.globalData.apiBase, token });
      this.refreshConversations();
    });
  },

  onUnload() {
    if (this.handle) this.handle.stop(); // leaving the page: stop generating (and billing)
  },

  onInput(e) { this.setData({ input: e.detail.value }); },

  send() {
    const prompt = this.data.input.trim();
    if (!prompt || this.data.streaming || !this.api) return;
    const i = this.data.turns.length;
    this.setData({ input: '', [`turns[${i}]`]: { question: prompt, answer: '', status: 'streaming', useful: 0, messageId: '' } });
    this.ask(i, prompt);
  },

  /**
   * Streams the answer of turns[i]. With the requestId of an earlier attempt the server replays
   * (or follows) that same turn instead of asking the model again: that is how a cut answer resumes.
   */
  ask(i, prompt, requestId) {
    this.setData({ streaming: true, [`turns[${i}].status`]: 'streaming', [`turns[${i}].cut`]: false,
      [`turns[${i}].action`]: '' });
    const render = throttle((text) => this.setData({ [`turns[${i}].answer`]: text }), RENDER_EVERY_MS);
    const finish = (status, text, action) => {
      render.cancel();
      this.handle = null;
      // Anything but a complete or stopped answer is shown as cut, with a way to resume or retry it.
      const cut = status !== 'complete' && status !== 'stopped';
      this.setData({ streaming: false, [`turns[${i}].answer`]: text, [`turns[${i}].status`]: status,
        [`turns[${i}].cut`]: cut, [`turns[${i}].action`]: cut ? action : '' });
      this.refreshConversations();
    };
    this.handle = this.api.streamChat({
      prompt,
      requestId,
      conversationId: this.conversationId,
      onMeta: (meta) => {
        this.conversationId = meta.conversationId;
        this.setData({ [`turns[${i}].messageId`]: meta.messageId });
      },
      onDelta: (delta, text) => render(text),
      onDone: (done) => {
        if (done.finishReason === 'stopped') finish('stopped', done.text);
        else if (CUT_REASONS.indexOf(done.finishReason) !== -1) finish('cut', done.text, 'retry');
        else finish('complete', done.text);
      },
      onError: (error) => {
        // answer_blocked: error.text is the answer cut where the content check refused it.
        // A connection that failed for good can be resumed: the same requestId replays the turn.
        const resumable = NETWORK_ERRORS.indexOf(error.code) !== -1;
        finish(error.code === 'answer_blocked' ? 'blocked' : 'failed', error.text, resumable ? 'resume' : 'retry');
        wx.showToast({ title: error.message || '出错了，请重试', icon: 'none' });
      },
    });
    this.setData({ [`turns[${i}].requestId`]: this.handle.requestId });
  },

  /** 继续: the connection was lost; ask for the same turn again (its requestId), nothing is generated twice. */
  resumeTurn(e) {
    const i = e.currentTarget.dataset.index;
    const turn = this.data.turns[i];
    if (this.data.streaming || !turn) return;
    this.ask(i, turn.question, turn.requestId);
  },

  /** 重试: the answer itself failed or was cut; ask the question again as a new turn. */
  retryTurn(e) {
    const i = e.currentTarget.dataset.index;
    const turn = this.data.turns[i];
    if (this.data.streaming || !turn) return;
    this.setData({ [`turns[${i}].answer`]: '' });
    this.ask(i, turn.question);
  },

  stop() { if (this.handle) this.handle.stop(); },

  rate(e) {
    const { index, value } = e.currentTarget.dataset;
    const turn = this.data.turns[index];
    const useful = turn.useful === value ? 0 : value; // tapping the same thumb again clears it
    this.api.setFeedback(turn.messageId, useful)
      .then(() => this.setData({ [`turns[${index}].useful`]: useful }))
      .catch((error) => wx.showToast({ title: error.message, icon: 'none' }));
  },

  toggleList() { this.setData({ showList: !this.data.showList }); },

  refreshConversations() {
    this.api.listConversations({ limit: 30 })
      .then((page) => this.setData({ conversations: page.items }))
      .catch(() => {});
  },

  openConversation(e) {
    if (this.data.streaming) return;
    const id = e.currentTarget.dataset.id;
    this.api.listMessages(id, { limit: 50 }).then((page) => {
      this.conversationId = id;
      this.setData({
        showList: false,
        turns: page.items.map((t) => ({
          question: t.question, answer: t.answer, status: t.status, useful: t.useful || 0, messageId: t.messageId,
          requestId: t.requestId, cut: t.status !== 'complete' && t.status !== 'stopped',
          action: t.status !== 'complete' && t.status !== 'stopped' ? 'retry' : '',
        })),
      });
    }).catch((error) => wx.showToast({ title: error.message, icon: 'none' }));
  },

  newConversation() {
    if (this.data.streaming) return;
    this.conversationId = null;
    this.setData({ turns: [], showList: false });
  },
});
