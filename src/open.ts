/**
 * Opening a disk of either format by name, probing when the format is not given: the entry point
 * of the CLI and the harness. Sits above the image facade (the facade never imports it); the
 * backing-chain rules live in engine/backing.ts.
 */
import * as fs from 'node:fs';
import type { GuestDisk } from './api.ts';
import { openChainMember, probeFormat, type ChainOpenOptions } from './engine/backing.ts';
import { Qcow2Error, UnsupportedError } from './errors.ts';
import { Qcow2Image } from './image.ts';

export { probeFormat };
export type OpenImageOptions = ChainOpenOptions;

export function openImage(file: string, opts: OpenImageOptions = {}): GuestDisk {
  if (file.startsWith('blkdebug:')) {
    // blkdebug:[CONFIG]:FILE (block/blkdebug.c). Without rules it is a pass-through; injected
    // errors and state machines are not modelled by this engine, and are refused rather than ignored.
    const rest = file.slice('blkdebug:'.length);
    const colon = rest.indexOf(':');
    const config = colon < 0 ? '' : rest.slice(0, colon);
    const inner = colon < 0 ? rest : rest.slice(colon + 1);
    if (config !== '' && /^\s*\[/m.test(fs.readFileSync(config, 'utf8'))) {
      throw new UnsupportedError(
        'UNSUPPORTED',
        `blkdebug rules (${config}) are not supported by this engine`,
        {
          config,
        },
      );
    }
    return openImage(inner, opts);
  }
  if (file.startsWith('json:')) {
    const j = parseJsonFilename(file);
    return openImage(j.filename, { ...opts, format: j.format ?? opts.format });
  }
  return openChainMember(file, opts, (dev, o) => Qcow2Image.openDevice(dev, o));
}

/**
 * QEMU's `json:{...}` pseudo-protocol (block.c, parse_json_filename): block-layer options as a JSON
 * object, flattened with dots. This engine honours a format driver over a file: `driver` (qcow2 or
 * raw) and `file.filename` / `file` / `filename`; any other driver is refused by name.
 */
export function parseJsonFilename(name: string): { filename: string; format?: 'qcow2' | 'raw' } {
  let obj: unknown;
  try {
    // QEMU's JSON parser also takes single-quoted strings.
    obj = JSON.parse(name.slice(5).replace(/'/g, '"'));
  } catch {
    throw new Qcow2Error('BAD_JSON', `Could not parse the JSON options`, { name });
  }
  const flat = new Map<string, unknown>();
  const walk = (v: unknown, prefix: string): void => {
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
      for (const [k, x] of Object.entries(v)) walk(x, prefix ? `${prefix}.${k}` : k);
    } else flat.set(prefix, v);
  };
  walk(obj, '');
  const str = (k: string): string | undefined => {
    const v = flat.get(k);
    return typeof v === 'string' ? v : undefined;
  };
  const driver = str('driver');
  for (const [k, v] of flat) {
    if ((k === 'driver' || k.endsWith('.driver')) && !['qcow2', 'raw', 'file'].includes(String(v))) {
      throw new Qcow2Error('UNKNOWN_DRIVER', `Unknown driver '${String(v)}'`, { driver: String(v) });
    }
    // Options this engine cannot honour are refused by name, never silently dropped.
    if (!['driver', 'file', 'filename', 'file.driver', 'file.filename'].includes(k)) {
      throw new UnsupportedError('UNSUPPORTED', `Block option '${k}' is not supported by this engine`, {
        key: k,
      });
    }
  }
  const filename = str('file.filename') ?? str('file') ?? str('filename');
  if (filename === undefined) {
    throw new Qcow2Error('BAD_JSON', 'A block device must be specified for "file"', { name });
  }
  const format = driver === 'qcow2' ? 'qcow2' : driver === 'raw' || driver === 'file' ? 'raw' : undefined;
  return { filename, format };
}
