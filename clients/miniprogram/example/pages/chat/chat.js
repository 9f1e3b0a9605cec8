// Sample chat page: streamed answers, stop, conversation list, like/dislike.
// Copy clients/miniprogram/chatrelay.js and sse-parser.js into utils/ of your project.
const chatrelay = require('../../utils/chatrelay.js');

const RENDER_EVERY_MS = 50; // setData is expensive: render streamed text at most this often

Page({
  data: { turns: [], conversations: [], input: '', streaming: false, showList: false },

  onLoad() {
    this.api = { url: getApp().globalData.apiBase, token: getApp().globalData.token };
    this.conversationId = null;
    this.refreshConversations();
  },

  onUnload() {
    if (this.handle) this.handle.stop();
  },

  onInput(e) { this.setData({ input: e.detail.value }); },

  send() {
    const prompt = this.data.input.trim();
    if (!prompt || this.data.streaming) return;
    const index = this.data.turns.length;
    this.setData({
      input: '', streaming: true,
      [`turns[${index}]`]: { question: prompt, answer: '', status: 'streaming', useful: 0, messageId: '' },
    });
    let pending = null;
    let lastRender = 0;
    const render = (text) => {
      pending = text;
      const now = Date.now();
      if (now - lastRender >= RENDER_EVERY_MS) {
        lastRender = now;
        this.setData({ [`turns[${index}].answer`]: pending });
        pending = null;
      }
    };
    const end = (status, text) => {
      this.handle = null;
      this.setData({ streaming: false, [`turns[${index}].answer`]: text, [`turns[${index}].status`]: status });
      this.refreshConversations();
    };
    this.handle = chatrelay.streamChat({
      ...this.api,
      prompt,
      conversationId: this.conversationId,
      requestId: `${Date.now()}-${Math.random().toString(36).slice(2)}`,
      onMeta: (meta) => {
        this.conversationId = meta.conversationId;
        this.setData({ [`turns[${index}].messageId`]: meta.messageId });
      },
      onDelta: (delta, text) => render(text),
      onDone: (done) => end(done.finishReason === 'stopped' ? 'stopped' : 'complete', done.text),
      onError: (error) => {
        end('failed', error.text || '');
        wx.showToast({ title: error.message || '出错了', icon: 'none' });
      },
    });
  },

  stop() { if (this.handle) this.handle.stop(); },

  rate(e) {
    const { index, value } = e.currentTarget.dataset;
    const turn = this.data.turns[index];
    const useful = turn.useful === value ? 0 : value; // a second tap clears the rating
    chatrelay.setFeedback(this.api, turn.messageId, useful)
      .then(() => this.setData({ [`turns[${index}].useful`]: useful }))
      .catch((error) => wx.showToast({ title: error.message, icon: 'none' }));
  },

  toggleList() { this.setData({ showList: !this.data.showList }); },

  refreshConversations() {
    chatrelay.listConversations(this.api, { limit: 30 })
      .then((page) => this.setData({ conversations: page.items }))
      .catch(() => {});
  },

  openConversation(e) {
    const id = e.currentTarget.dataset.id;
    chatrelay.listMessages(this.api, id, { limit: 100 }).then((page) => {
      this.conversationId = id;
      this.setData({
        showList: false,
        turns: page.items.map((t) => ({ question: t.question, answer: t.answer, status: t.status,
                                        useful: t.useful, messageId: t.messageId })),
      });
    });
  },

  newConversation() { this.conversationId = null; this.setData({ turns: [], showList: false }); },
});
