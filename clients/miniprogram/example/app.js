// Sample app for the chatrelay kit. Copy ../chatrelay.js, ../adapters.js and ../sse-parser.js into utils/ first.
const chatrelay = require('./utils/chatrelay.js');

App({
  globalData: {
    // The server's HTTPS base URL: it must be a request legal domain (服务器域名) of this mini-program.
    apiBase: 'https://chat.example.com',
    // Your backend's bearer token, e.g. from exchanging wx.login()'s code. Empty: the demo
    // asks a dev server (CHATRELAY_DEV_AUTH=1) for one.
    token: '',
  },

  /** The token, fetched once; pages call this before talking to the server. */
  ensureToken() {
    const data = this.globalData;
    if (data.token) return Promise.resolve(data.token);
    if (!this.tokenPromise) {
      this.tokenPromise = chatrelay.devLogin({ url: data.apiBase }, 'demo-user').then((res) => {
        data.token = res.token;
        return res.token;
      });
    }
    return this.tokenPromise;
  },
});
