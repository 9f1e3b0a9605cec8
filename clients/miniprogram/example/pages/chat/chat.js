// Sample chat page: streamed answer, stop, conversation list, like / dislike.
const chatrelay = require('../../utils/chatrelay.js');

const RENDER_EVERY_MS = 50; // setData crosses threads: render the growing answer at most this often

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
    this.setData({
      input: '',
      streaming: true,
      [`turns[${i}]`]: { question: prompt, answer: '', status: 'streaming', useful: 0, messageId: '' },
    });
    const render = throttle((text) => this.setData({ [`turns[${i}].answer`]: text }), RENDER_EVERY_MS);
    const finish = (status, text) => {
      render.cancel();
      this.handle = null;
      this.setData({ streaming: false, [`turns[${i}].answer`]: text, [`turns[${i}].status`]: status });
      this.refreshConversations();
    };
    this.handle = this.api.streamChat({
      prompt,
      conversationId: this.conversationId,
      onMeta: (meta) => {
        this.conversationId = meta.conversationId;
        this.setData({ [`turns[${i}].messageId`]: meta.messageId });
      },
      onDelta: (delta, text) => render(text),
      onDone: (done) => finish(done.finishReason === 'stopped' ? 'stopped' : 'complete', done.text),
      onError: (error) => {
        // answer_blocked: error.text is the answer cut where the content check refused it.
        finish(error.code === 'answer_blocked' ? 'blocked' : 'failed', error.text);
        wx.showToast({ title: error.message || '出错了，请重试', icon: 'none' });
      },
    });
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
