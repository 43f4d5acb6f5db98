/**
 * A build step (scripts/build.mjs): esbuild's interop helper `__toESM` wraps a CommonJS module for
 * each ES module that imports it whole (`import * as fs from 'node:fs'`: 14 of our modules for
 * node:fs alone), copying the module's ~100 properties into a new object every time, which costs
 * about 2 ms of CPU at every start that opens an image (main() of `qcow2 info`: 6.6-6.9 ms without
 * this step, 4.6-4.7 ms with it, measured). The wrapper of one module is the same every time, so
 * this step makes `__toESM` build it once and share it.
 *
 * The sharing code goes right after esbuild's helpers, before any module's code runs, on a line
 * that also holds mapped code: the source map's column for the first mapping after it is moved
 * by the inserted length (columns are relative within a line, so the rest follow).
 * Plain JavaScript, like build.mjs.
 */

const HELPER = 'var __toESM=(mod,isNodeMode,target)=>';
const AFTER = 'var __toCommonJS=';

export const SHARED =
  'var __toESM_each=__toESM,__toESM_made=new WeakMap;' +
  '__toESM=(mod,isNodeMode)=>{' +
  'if(mod==null||typeof mod!=="object"&&typeof mod!=="function")return __toESM_each(mod,isNodeMode);' +
  'let w=__toESM_made.get(mod);if(!w)__toESM_made.set(mod,w=[]);' +
  'return w[isNodeMode?1:0]??=__toESM_each(mod,isNodeMode)};';

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

/** The numbers of one source-map segment (base64 VLQ). */
export function decodeVlq(s) {
  const out = [];
  let value = 0;
  let shift = 0;
  for (const ch of s) {
    const d = B64.indexOf(ch);
    if (d < 0) throw new Error(`share-interop: bad base64 VLQ digit ${ch}`);
    value += (d & 31) << shift;
    if (d & 32) shift += 5;
    else {
      out.push(value & 1 ? -(value >>> 1) : value >>> 1);
      value = 0;
      shift = 0;
    }
  }
  return out;
}

export function encodeVlq(nums) {
  let s = '';
  for (const n of nums) {
    let v = n < 0 ? (-n << 1) | 1 : n << 1;
    do {
      let d = v & 31;
      v >>>= 5;
      if (v > 0) d |= 32;
      s += B64[d];
    } while (v > 0);
  }
  return s;
}

/**
 * `mappings` with `n` columns inserted at (`line`, `column`) of the generated code: the first
 * segment of that line at or after the column moves by `n`.
 */
export function shiftMappings(mappings, line, column, n) {
  const lines = mappings.split(';');
  if (line >= lines.length || lines[line] === '') return mappings;
  const segs = lines[line].split(',');
  let col = 0;
  for (let i = 0; i < segs.length; i++) {
    const f = decodeVlq(segs[i]);
    col += f[0];
    if (col >= column) {
      f[0] += n;
      segs[i] = encodeVlq(f);
      break;
    }
  }
  lines[line] = segs.join(',');
  return lines.join(';');
}

/**
 * The bundle `code` and its source map `map` (parsed) with shared interop wrappers, or unchanged
 * (`shared: false`) when esbuild's helpers are not where this expects them.
 */
export function shareInteropWrappers(code, map) {
  const at = code.indexOf(AFTER);
  if (code.split(HELPER).length !== 2 || code.split(AFTER).length !== 2 || code.indexOf(HELPER) > at)
    return { code, map, shared: false };
  const line = code.slice(0, at).split('\n').length - 1;
  const column = at - (code.lastIndexOf('\n', at - 1) + 1);
  return {
    code: code.slice(0, at) + SHARED + code.slice(at),
    map: { ...map, mappings: shiftMappings(map.mappings, line, column, SHARED.length) },
    shared: true,
  };
}
