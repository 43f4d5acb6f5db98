/**
 * The build step that shares esbuild's interop wrappers (scripts/share-interop.mjs): the code goes
 * in after the helpers, and the source map still points every later position where it did.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { SourceMap } from 'node:module';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { isStale } from '../../scripts/build.mjs';
import { SHARED, decodeVlq, encodeVlq, shareInteropWrappers } from '../../scripts/share-interop.mjs';

const root = path.resolve(__dirname, '../..');

describe('share-interop', () => {
  it('round-trips base64 VLQ segments', () => {
    for (const seg of [[0], [0, 0, 0, 0], [5, -3, 1000, -100000, 7], [123456789, 0, -1, 1]])
      expect(decodeVlq(encodeVlq(seg))).toEqual(seg);
    expect(encodeVlq([0, 0, 16, 1])).toBe('AAgBC'); // a segment as esbuild writes them
  });

  it('inserts after the helpers and moves the mapped columns after the insertion', () => {
    const code = 'var __toESM=(mod,isNodeMode,target)=>0;var __toCommonJS=1;foo();bar()';
    const foo = code.indexOf('foo');
    const bar = code.indexOf('bar');
    // Line 0: col 0 → source 0 line 0 col 0; foo → line 4 col 2; bar → line 9 col 0.
    const map = {
      version: 3,
      file: 'a.js',
      sourceRoot: '',
      sources: ['a.ts'],
      sourcesContent: [],
      names: [],
      mappings: [encodeVlq([0, 0, 0, 0]), encodeVlq([foo, 0, 4, 2]), encodeVlq([bar - foo, 0, 5, -2])].join(
        ',',
      ),
    };
    const s = shareInteropWrappers(code, map);
    expect(s.shared).toBe(true);
    expect(s.code.indexOf(SHARED)).toBe(code.indexOf('var __toCommonJS='));
    const sm = new SourceMap(s.map);
    for (const [name, line] of [
      ['foo', 4],
      ['bar', 9],
    ] as const)
      expect(sm.findEntry(0, s.code.indexOf(`${name}()`))).toMatchObject({ originalLine: line });
    expect(sm.findEntry(0, 0)).toMatchObject({ originalLine: 0, originalColumn: 0 });
    // Not esbuild's helpers: unchanged.
    expect(shareInteropWrappers('var x=1;', map)).toEqual({ code: 'var x=1;', map, shared: false });
  });

  it('the built bundle shares them, and its map still finds functions after them', () => {
    // bin/qcow2.js builds dist/ when it is missing or older than the sources.
    expect(spawnSync('node', [path.join(root, 'bin/qcow2.js'), '--version']).status).toBe(0);
    expect(isStale()).toBe(false);
    const code = fs.readFileSync(path.join(root, 'dist/qcow2.cjs'), 'latin1');
    expect(code.split('__toESM_made=new WeakMap').length).toBe(2);
    const sm = new SourceMap(JSON.parse(fs.readFileSync(path.join(root, 'dist/qcow2.cjs.map'), 'utf8')));
    const lines = code.split('\n');
    // The functions on the helpers' own line after the inserted code (columns moved), and later ones.
    const at = lines.findIndex((l) => l.includes('__toESM_made'));
    const after = lines[at]!.slice(lines[at]!.indexOf('__toESM_made'));
    const onLine = [...after.matchAll(/function ([A-Za-z_$][\w$]*)\(/g)].map((m) => m[1]!).slice(0, 5);
    expect(onLine.length).toBeGreaterThan(0);
    for (const name of [...onLine, 'decodeReftable', 'firstDiff']) {
      const fn = `function ${name}(`;
      const line = lines.findIndex((l) => l.includes(fn));
      const e = sm.findEntry(line, lines[line]!.indexOf(fn));
      expect(e, name).toHaveProperty('originalSource');
      if (!('originalSource' in e)) continue;
      const src = fs.readFileSync(path.resolve(root, 'dist', e.originalSource), 'utf8').split('\n');
      expect(src[e.originalLine], name).toContain(`function ${name}`);
    }
  });
});
