/**
 * Discard options as qemu-io and `--image-opts` carry them: qemu-io's `-d/--discard` and the
 * block layer's `discard` option (bdrv_parse_discard_flags: ignore|off keep BDRV_O_UNMAP clear,
 * unmap|on set it; qemu-io opens with it set), and qcow2's pass-discard-request/-snapshot/-other
 * runtime options (qcow2_update_options_prepare; booleans as QEMU's option parser takes them).
 * The engine applies them (refcounts.ts `discardPassthrough`, image.ts).
 */
import type { OpenOptions } from '../api.ts';
import { ArgumentError } from '../errors.ts';
import { parseOptString } from './args.ts';

/** bdrv_parse_discard_flags: true for unmap|on, false for ignore|off, undefined otherwise. */
export function parseDiscardMode(v: string): boolean | undefined {
  if (v === 'unmap' || v === 'on') return true;
  if (v === 'ignore' || v === 'off') return false;
  return undefined;
}

/** qapi_bool_parse's words. */
function parseBool(key: string, v: string): boolean {
  if (['on', 'yes', 'true', 'y'].includes(v)) return true;
  if (['off', 'no', 'false', 'n'].includes(v)) return false;
  throw new ArgumentError('INVALID_OPTION', `Parameter '${key}' expects 'on' or 'off'`, { [key]: v });
}

const PASS_KEYS = [
  ['pass-discard-request', 'passRequest'],
  ['pass-discard-snapshot', 'passSnapshot'],
  ['pass-discard-other', 'passOther'],
] as const;

/**
 * The discard options of a command line: `flag` is -d's value (undefined: the tool's default,
 * `defaultUnmap`), `spec` an --image-opts string whose `discard` key overrides it.
 */
export function discardOptionsOf(
  flag: string | undefined,
  spec: string | undefined,
  defaultUnmap: boolean,
): NonNullable<OpenOptions['discard']> {
  const out: NonNullable<OpenOptions['discard']> = { unmap: defaultUnmap };
  if (flag !== undefined) out.unmap = parseDiscardMode(flag) ?? defaultUnmap;
  if (spec === undefined) return out;
  const o = parseOptString(spec);
  const mode = o.get('discard');
  if (mode !== undefined) {
    const m = parseDiscardMode(mode);
    if (m === undefined)
      throw new ArgumentError('INVALID_OPTION', 'Invalid discard option', { discard: mode });
    out.unmap = m;
  }
  for (const [key, field] of PASS_KEYS) {
    const v = o.get(key);
    if (v !== undefined) out[field] = parseBool(key, v);
  }
  return out;
}
