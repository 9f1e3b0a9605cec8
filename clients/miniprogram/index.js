// Package entry (the WeChat devtools' "build npm" looks for index.js): the kit as one module.
'use strict';
module.exports = require('./chatrelay.js');
