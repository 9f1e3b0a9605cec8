'use strict';
// The npm package: entry points, shipped files, no runtime dependencies, declarations that
// name every export.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');

const ROOT = path.join(__dirname, '..');
const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));

test('package.json: name, main, types, files, the miniprogram field, no dependencies', () => {
  assert.equal(pkg.name, '@chatrelay/miniprogram');
  assert.equal(pkg.main, 'index.js');
  assert.equal(pkg.types, 'index.d.ts');
  assert.equal(pkg.miniprogram, './', 'WeChat devtools "build npm" copies this folder');
  assert.deepEqual(pkg.dependencies || {}, {});
  for (const file of pkg.files) assert.ok(fs.existsSync(path.join(ROOT, file)), `${file} is shipped and exists`);
  for (const file of ['index.js', 'chatrelay.js', 'sse-parser.js', 'adapters.js']) {
    assert.ok(pkg.files.includes(file), `${file} shipped`);
    assert.ok(pkg.files.includes(file.replace(/\.js$/, '.d.ts')), `${file} has declarations`);
  }
});

test('index.js is the kit; the runtime files require nothing outside the package', () => {
  assert.equal(require(path.join(ROOT, 'index.js')), require(path.join(ROOT, 'chatrelay.js')));
  for (const file of ['chatrelay.js', 'sse-parser.js', 'adapters.js', 'index.js']) {
    const source = fs.readFileSync(path.join(ROOT, file), 'utf8');
    for (const [, name] of source.matchAll(/require\('([^']+)'\)/g)) assert.match(name, /^\.\/[\w-]+\.js$/, `${file}: ${name}`);
  }
});

test('the declarations name every export', () => {
  const pairs = [['chatrelay.js', 'chatrelay.d.ts'], ['sse-parser.js', 'sse-parser.d.ts'], ['adapters.js', 'adapters.d.ts']];
  for (const [js, dts] of pairs) {
    const declared = fs.readFileSync(path.join(ROOT, dts), 'utf8');
    for (const name of Object.keys(require(path.join(ROOT, js)))) {
      assert.match(declared, new RegExp(`export (function|\\* as) ${name}\\b`), `${dts} declares ${name}`);
    }
  }
});
