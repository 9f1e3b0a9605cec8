'use strict';
// Every platform adapter, each against its own fake runtime, passes the same behavioural suite.
const path = require('node:path');
const { behaviouralSuite } = require('./adapter-suite.js');
const { wxLike, douyin, alipay } = require('./fakes/platforms.js');

const adapters = () => require(path.join(__dirname, '..', 'adapters.js'));

const PLATFORMS = [
  { name: 'WeChat: wx.request({enableChunked})',
    make: (server, o) => { const f = wxLike(server, { flavour: 'wx', ...o }); return { ...f, options: { wx: f } }; } },
  { name: 'uni-app: uni.request (mp-weixin)',
    make: (server, o) => { const f = wxLike(server, { flavour: 'uni', ...o }); return { ...f, options: { adapter: adapters().uniApp(f) } }; } },
  { name: 'Taro: Taro.request',
    make: (server, o) => { const f = wxLike(server, { flavour: 'taro', ...o }); return { ...f, options: { adapter: adapters().taro({ request: f.request }) } }; } },
  { name: 'Douyin: tt.createEventSource',
    make: (server, o) => { const f = douyin(server, o); return { ...f, options: { adapter: adapters().douyin(f.tt) } }; } },
  { name: 'Douyin: tt.request without EventSource (polled)',
    make: (server, o) => { const f = douyin(server, { ...o, eventSource: false }); return { ...f, options: { adapter: adapters().douyin(f.tt) } }; } },
  { name: 'Alipay: my.request without chunked mode (polled)',
    make: (server, o) => { const f = alipay(server, o); return { ...f, options: { adapter: adapters().alipay(f.my) } }; } },
];

for (const platform of PLATFORMS) behaviouralSuite(platform);
