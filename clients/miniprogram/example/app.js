// The server's HTTPS base URL: it must be a request legal domain of this mini-program.
App({
  globalData: { apiBase: 'https://chat.example.com', token: '' },
});
