/**
 * Output helpers that reproduce QEMU's printing: QDict key order (JSON from qemu-img is a QDict,
 * iterated by hash bucket), the pretty JSON printer, size_to_str ("1.06 MiB"), qemu-io's cvtstr
 * ("1.062 MiB") and its timing line, and the human dump of a QDict (info's "Format specific").
 */

export type JsonValue = string | number | boolean | JsonValue[] | JsonObject;
export interface JsonObject {
  [k: string]: JsonValue | undefined;
}

/** QEMU's qdict bucket hash (tdb_hash) for a key. */
function tdbHash(name: string): number {
  const b = new TextEncoder().encode(name);
  let v = Math.imul(0x238f13af, b.length) >>> 0;
  for (let i = 0; i < b.length; i++) v = (v + ((b[i]! << ((i * 5) % 24)) >>> 0)) >>> 0;
  return (Math.imul(1103515243, v) + 12345) >>> 0;
}

const QDICT_BUCKETS = 512;

/**
 * Keys in the order QEMU prints a QDict built by inserting them in `keys` order: by bucket, and
 * within a bucket the latest insertion first.
 */
export function qdictOrder(keys: readonly string[]): string[] {
  return keys
    .map((k, i) => ({ k, b: tdbHash(k) % QDICT_BUCKETS, i }))
    .sort((x, y) => x.b - y.b || y.i - x.i)
    .map((x) => x.k);
}

/** Pretty JSON exactly as qobject_to_json_pretty (4 spaces, `"k": v`), objects in QDict order. */
export function qjson(v: JsonValue, indent = 0): string {
  const pad = (n: number): string => ' '.repeat(n * 4);
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (Array.isArray(v)) {
    // QEMU's pretty printer writes an empty list as "[", a newline, the indentation, "]".
    if (v.length === 0) return `[\n${pad(indent)}]`;
    return `[\n${v.map((x) => pad(indent + 1) + qjson(x, indent + 1)).join(',\n')}\n${pad(indent)}]`;
  }
  const keys = qdictOrder(Object.keys(v).filter((k) => v[k] !== undefined));
  if (keys.length === 0) return '{}';
  return `{\n${keys.map((k) => `${pad(indent + 1)}${JSON.stringify(k)}: ${qjson(v[k]!, indent + 1)}`).join(',\n')}\n${pad(indent)}}`;
}

/** C's "%.3g" for non-negative values below 10^6. */
function g3(x: number): string {
  if (x === 0) return '0';
  let s = x.toPrecision(3);
  if (s.includes('e')) {
    const [m, e] = s.split('e');
    const mant = m!.includes('.') ? m!.replace(/0+$/, '').replace(/\.$/, '') : m!;
    const exp = Number(e);
    return `${mant}e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`;
  }
  // C rounds an exact tie to even ("%.3g" of 646.5 is "646"); toPrecision rounds it up. A tie's
  // decimal expansion ends in the 5 after the third significant digit (toFixed is exact).
  const d = 2 - Math.floor(Math.log10(Math.abs(x)));
  if (d >= 0 && d + 25 <= 100) {
    const t = Math.abs(x).toFixed(d + 25);
    const kept = t.slice(0, t.length - 25);
    if (/^50*$/.test(t.slice(t.length - 25)) && Number(kept.replace('.', '').slice(-1)) % 2 === 0)
      s = `${x < 0 ? '-' : ''}${kept.replace(/\.$/, '')}`;
  }
  if (s.includes('.')) s = s.replace(/0+$/, '').replace(/\.$/, '');
  return s;
}

/** QEMU's size_to_str: "0 B", "396 KiB", "1.06 MiB". */
export function sizeToStr(val: number): string {
  const suffixes = ['', 'Ki', 'Mi', 'Gi', 'Ti', 'Pi', 'Ei'];
  const scaled = val / (1000 / 1024);
  // frexp exponent: smallest e with scaled < 2^e (0 for 0).
  let e = 0;
  if (scaled > 0) e = Math.floor(Math.log2(scaled)) + 1;
  if (scaled > 0 && 2 ** (e - 1) > scaled) e--;
  const i = Math.max(0, Math.trunc((e - 1) / 10));
  return `${g3(val / 2 ** (i * 10))} ${suffixes[i]}B`;
}

/** C's "%.<d>f": like toFixed, but an exact tie rounds to even (toFixed rounds it up). */
export function cfixed(x: number, d: number): string {
  const scaled = x * 10 ** d;
  if (Number.isFinite(scaled) && scaled - Math.floor(scaled) === 0.5 && scaled / 10 ** d === x) {
    const down = Math.floor(scaled);
    const n = down % 2 === 0 ? down : down + 1;
    return (n / 10 ** d).toFixed(d);
  }
  return x.toFixed(d);
}

/** qemu-io's cvtstr: "%.3f" with a trailing ".000" dropped; units EiB..KiB, "bytes". */
export function cvtstr(value: number): string {
  const units: Array<[number, string]> = [
    [2 ** 60, ' EiB'],
    [2 ** 50, ' PiB'],
    [2 ** 40, ' TiB'],
    [2 ** 30, ' GiB'],
    [2 ** 20, ' MiB'],
    [2 ** 10, ' KiB'],
  ];
  let str: string;
  let suffix = ' bytes';
  const u = units.find(([m]) => value >= m);
  if (u) {
    str = cfixed(value / u[0], 3);
    suffix = u[1];
  } else str = cfixed(value, 6);
  const trim = str.indexOf('.000');
  return (trim >= 0 ? str.slice(0, trim) : str) + suffix;
}

/** qemu-io's timestr for an elapsed time in seconds. */
export function timestr(sec: number): string {
  const whole = Math.floor(sec);
  const frac = sec - whole;
  if (whole > 0) {
    const h = Math.floor(whole / 3600);
    const m = Math.floor(whole / 60) % 60;
    const s = (whole % 60) + frac;
    return `${h}:${String(m).padStart(2, '0')}:${cfixed(s, 2).padStart(5, '0')}`;
  }
  return `${cfixed(frac, 2).padStart(5, '0')} sec`;
}

/** qemu-io's two-line report after read/write/discard. */
export function ioReport(
  op: string,
  offset: number,
  count: number,
  total: number,
  ops: number,
  sec: number,
): string {
  const t = sec > 0 ? sec : 1e-9;
  return (
    `${op} ${total}/${count} bytes at offset ${offset}\n` +
    `${cvtstr(total)}, ${ops} ops; ${timestr(sec)} (${cvtstr(total / t)}/sec and ${cfixed(ops / t, 4)} ops/sec)\n`
  );
}

/** Human dump of a QDict (bdrv_image_info_specific_dump): "key with spaces: value", nested by 4. */
export function dumpQdict(v: JsonObject, indent: number): string {
  let out = '';
  for (const k of qdictOrder(Object.keys(v).filter((x) => v[x] !== undefined))) {
    const val = v[k]!;
    const composite = typeof val === 'object';
    out += `${' '.repeat(indent * 4)}${k.replace(/-/g, ' ')}:`;
    if (composite) out += '\n';
    out += dumpQobject(val, indent + 1);
    if (!composite) out += '\n';
  }
  return out;
}

function dumpQobject(v: JsonValue, indent: number): string {
  if (Array.isArray(v)) {
    let out = '';
    v.forEach((x, i) => {
      const composite = typeof x === 'object';
      out += `${' '.repeat(indent * 4)}[${i}]:`;
      if (composite) out += '\n';
      out += dumpQobject(x, indent + 1);
      if (!composite) out += '\n';
    });
    return out;
  }
  if (typeof v === 'object') return dumpQdict(v, indent);
  return ` ${String(v)}`;
}

/** "%#-16x"-style hex as qemu-img map's human output (0 prints as "0"). */
export function hexAlt(n: number, width: number): string {
  const s = n === 0 ? '0' : `0x${n.toString(16)}`;
  return s.padEnd(width, ' ');
}

/**
 * An integer as QEMU prints an int64 (PRId64): every digit of the value, where JavaScript's
 * shortest round-trip form would print 2^60 as 1152921504606847000.
 */
export function exactInt(n: number | bigint): string {
  return typeof n === 'bigint' || !Number.isInteger(n) ? String(n) : BigInt(n).toString();
}
