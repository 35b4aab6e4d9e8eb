// flowcast.d.ts declares every name flowcast.js exports (and no other), and
// it compiles with tsc --strict against usage.ts, which uses every public
// function, option, event and error the way an application does.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import * as flowcast from '../flowcast.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const dts = fs.readFileSync(path.join(here, '..', 'flowcast.d.ts'), 'utf8');

test('every export of flowcast.js is declared in flowcast.d.ts, and nothing else is', () => {
  const declared = new Set([...dts.matchAll(/^export (?:class|const|function) (\w+)/gm)].map((m) => m[1]));
  assert.deepEqual([...declared].sort(), Object.keys(flowcast).sort());
});

test('every FlowcastClient method is declared', () => {
  const methods = Object.getOwnPropertyNames(flowcast.FlowcastClient.prototype)
    .filter((m) => m !== 'constructor' && !m.startsWith('_'));
  const body = dts.slice(dts.indexOf('export class FlowcastClient'));
  const cls = body.slice(0, body.indexOf('\n}\n'));
  for (const m of methods) assert.match(cls, new RegExp(`\\n  (readonly )?${m}[(:]`), `FlowcastClient.${m}`);
});

test('every constructor option is declared in FlowcastOptions', () => {
  const all = fs.readFileSync(path.join(here, '..', 'flowcast.js'), 'utf8');
  const start = all.indexOf('  constructor(opts = {}) {');
  const src = all.slice(start, all.indexOf('\n  }\n', start));
  const used = new Set([...src.matchAll(/\bopts\.(\w+)/g)].map((m) => m[1]));
  const body = dts.slice(dts.indexOf('export interface FlowcastOptions'));
  const iface = body.slice(0, body.indexOf('\n}\n'));
  for (const o of used) assert.match(iface, new RegExp(`\\n  ${o}\\?:`), `option ${o}`);
});

test('tsc --strict compiles flowcast.d.ts and a program using all of it', () => {
  const tsc = path.join(here, '..', 'node_modules', 'typescript', 'bin', 'tsc');
  assert.ok(fs.existsSync(tsc), 'typescript is installed (npm ci in clients/js)');
  try {
    execFileSync(process.execPath, [tsc, '-p', path.join(here, 'tsconfig.json')], { encoding: 'utf8', stdio: 'pipe' });
  } catch (e) {
    assert.fail(`tsc failed:\n${e.stdout}${e.stderr}`);
  }
});
