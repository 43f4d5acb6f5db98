/**
 * libqcow (libyal's qcow reader, Debian's libqcow1 20201213) as a reader, through one long-lived
 * helper process on Debian's python3-libqcow (`pyqcow-helper.py`). Why a helper process and not an
 * FFI in this process: libqcow can loop forever or read out of bounds on images QEMU writes
 * (docs/findings/libqcow.md), and only a separate process can be killed; per byte read, pyqcow and
 * an FFI call of libqcow_file_read_buffer_at_offset (koffi) cost about the same, the read itself
 * being libqcow's (`tsx scripts/reader-bench.ts`; docs/findings/libqcow.md has the figures).
 *
 * Declared unsupported (no attempt): a raw backing file (libqcow's parent must be a libqcow file)
 * and reading internal snapshots (libqcow has no API for them). Learned from clean refusals:
 * incompatible feature bits (extended L2, zstd, external data file), named per bit.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import type { ImageLayout } from '../layout.ts';
import {
  ReaderUnavailableError,
  hex16,
  wrongDataCategory,
  type DiskReader,
  type ReadOutcome,
  type ReadRequest,
} from './reader.ts';

export const PYTHON = '/usr/bin/python3';
const HELPER = new URL('./pyqcow-helper.py', import.meta.url).pathname;
/** Bytes per compared chunk: large reads keep libqcow's per-call cost low; only a bad chunk travels back. */
export const CHUNK = 4 << 20;
/**
 * The model's side of a chunk is asked for in pieces this small: they stay in the CPU's cache and
 * come from the heap, where a 4 MiB array would be fresh pages (a sparse GiB cost a second).
 */
const PIECE = 64 << 10;
const ZEROS = Buffer.alloc(PIECE);

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** `z` when chunk i of the model is all zeros, else the SHA-1 of its bytes (what the helper compares). */
function chunkDigest(request: ReadRequest, i: number): string {
  const start = i * CHUNK;
  const end = Math.min(request.size, start + CHUNK);
  let zero = true;
  for (let at = start; at < end && zero; at += PIECE) {
    const piece = asBuffer(request.expected(at, Math.min(PIECE, end - at)));
    zero = piece.equals(ZEROS.subarray(0, piece.length));
  }
  if (zero) return 'z';
  const hash = createHash('sha1');
  for (let at = start; at < end; at += PIECE) hash.update(request.expected(at, Math.min(PIECE, end - at)));
  return hash.digest('hex');
}

/** qcow2.txt "incompatible_features": the bits libqcow 20201213 names in its refusal. */
const INCOMPATIBLE_BITS: Record<number, string> = {
  1: 'corrupt bit',
  2: 'external data file',
  3: 'compression type (zstd)',
  4: 'extended L2 entries',
};

/** The feature a libqcow refusal names, or undefined when the error is not a refusal. */
export function refusedFeature(message: string): string | undefined {
  const bits = /unsupported incompatible features flags: 0x([0-9a-f]+)/i.exec(message);
  if (bits) {
    const value = BigInt(`0x${bits[1]}`);
    const names: string[] = [];
    // The message prints every bit set; libqcow supports the dirty bit (0) and refuses the others.
    for (let b = 1; b < 64; b++)
      if ((value >> BigInt(b)) & 1n) names.push(INCOMPATIBLE_BITS[b] ?? `incompatible bit ${b}`);
    return names.join(' + ');
  }
  const other = /unsupported ([a-z0-9 ]+?)(?: value)?[.:]/i.exec(message);
  if (other && !/access flags/.test(other[1])) return other[1];
  return undefined;
}

interface Pending {
  resolve: (answer: HelperAnswer) => void;
  reject: (e: Error) => void;
}

type HelperAnswer =
  | { version: string }
  | { ok: true; mediaSize: number }
  | { mismatch: number; mediaSize: number; data: string }
  | { error: string };

class HelperExited extends Error {}
class HelperTimeout extends Error {}

export class LibqcowReader implements DiskReader {
  readonly name = 'libqcow';
  readonly readsSnapshots = false;
  private child: ChildProcessWithoutNullStreams | undefined;
  private pending: Pending | undefined;
  private buffered = '';
  private stderrTail = '';
  private versionText: string | undefined;
  /** Checkpoint reads performed and bytes read (for the report's throughput figures). */
  reads = 0;
  bytesRead = 0;
  readMs = 0;

  unsupported(layout: ImageLayout): string[] {
    const out: string[] = [];
    if (layout.backing?.format === 'raw') out.push('raw backing file');
    return out;
  }

  async version(): Promise<string> {
    if (this.versionText) return this.versionText;
    if (!fs.existsSync(PYTHON))
      throw new ReaderUnavailableError(
        this.name,
        `${PYTHON} is missing (Debian's python3-libqcow; run scripts/setup.sh)`,
      );
    let answer: HelperAnswer;
    try {
      answer = await this.ask({ op: 'version' }, 15_000);
    } catch (e) {
      throw new ReaderUnavailableError(
        this.name,
        `${PYTHON} cannot import pyqcow (Debian's python3-libqcow; run scripts/setup.sh): ${(e as Error).message} ${this.stderrTail.trim()}`,
      );
    }
    if (!('version' in answer)) throw new ReaderUnavailableError(this.name, JSON.stringify(answer));
    this.versionText = answer.version;
    return answer.version;
  }

  async read(request: ReadRequest): Promise<ReadOutcome> {
    const started = Date.now();
    const chunks = Math.ceil(request.size / CHUNK);
    const expected: string[] = [];
    for (let i = 0; i < chunks; i++) expected.push(chunkDigest(request, i));
    // Generous for a loaded machine: libqcow reads a sparse GiB in well under a second.
    const timeoutMs = 8000 + Math.ceil(request.size / (128 << 20)) * 1000;
    let answer: HelperAnswer;
    try {
      answer = await this.ask(
        {
          op: 'check',
          image: request.image,
          parents: request.parents,
          password: request.password ?? null,
          size: request.size,
          chunk: CHUNK,
          expected,
        },
        timeoutMs,
      );
    } catch (e) {
      if (e instanceof HelperTimeout)
        return {
          status: 'failed',
          how: 'hang',
          message: `no answer in ${timeoutMs} ms reading ${request.size} bytes`,
        };
      if (e instanceof HelperExited) return { status: 'failed', how: 'crash', message: e.message };
      throw e;
    } finally {
      this.reads += 1;
      this.readMs += Date.now() - started;
    }
    if ('error' in answer) {
      const feature = refusedFeature(answer.error);
      return feature
        ? { status: 'refused', feature, message: answer.error }
        : { status: 'failed', how: 'error', message: answer.error };
    }
    if ('version' in answer) throw new Error('libqcow helper: answered a version to a read');
    this.bytesRead += request.size;
    if ('ok' in answer) {
      if (answer.mediaSize !== request.size)
        return {
          status: 'mismatch',
          offset: Math.min(answer.mediaSize, request.size),
          expected: `a disk of ${request.size} bytes`,
          observed: `a disk of ${answer.mediaSize} bytes`,
          category: 'virtual-size',
        };
      return { status: 'ok' };
    }
    const at = answer.mismatch * CHUNK;
    const want = request.expected(at, Math.min(CHUNK, request.size - at));
    const got = new Uint8Array(Buffer.from(answer.data, 'base64'));
    let i = 0;
    while (i < want.length && i < got.length && want[i] === got[i]) i++;
    const sizeNote = answer.mediaSize !== request.size ? ` (its disk: ${answer.mediaSize} bytes)` : '';
    return {
      status: 'mismatch',
      offset: at + i,
      expected: hex16(want, i),
      observed:
        i < got.length
          ? `${hex16(got, i)}${sizeNote}`
          : `a short read: ${got.length} of ${want.length} bytes${sizeNote}`,
      category: i < got.length ? wrongDataCategory(want, got, i) : 'short-read',
    };
  }

  async shutdown(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (!child) return;
    child.stdin.end();
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        child.kill('SIGKILL');
        resolve();
      }, 2000);
      child.once('exit', () => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  private start(): ChildProcessWithoutNullStreams {
    const child = spawn(PYTHON, [HELPER], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.buffered = '';
    this.stderrTail = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (text: string) => {
      this.buffered += text;
      let nl: number;
      while ((nl = this.buffered.indexOf('\n')) >= 0) {
        const line = this.buffered.slice(0, nl);
        this.buffered = this.buffered.slice(nl + 1);
        const p = this.pending;
        this.pending = undefined;
        p?.resolve(JSON.parse(line) as HelperAnswer);
      }
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (text: string) => {
      this.stderrTail = (this.stderrTail + text).slice(-2000);
    });
    child.on('exit', (code, signal) => {
      if (this.child === child) this.child = undefined;
      const p = this.pending;
      this.pending = undefined;
      p?.reject(
        new HelperExited(
          `libqcow helper exited (${signal ?? `code ${String(code)}`}) ${this.stderrTail.trim().slice(-600)}`,
        ),
      );
    });
    child.on('error', (e) => {
      const p = this.pending;
      this.pending = undefined;
      p?.reject(new HelperExited(`libqcow helper: ${e.message}`));
    });
    this.child = child;
    return child;
  }

  private ask(request: object, timeoutMs: number): Promise<HelperAnswer> {
    const child = this.child ?? this.start();
    return new Promise<HelperAnswer>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending = undefined;
        // A hang inside libqcow cannot be interrupted: the helper goes, the next read starts another.
        if (this.child === child) this.child = undefined;
        child.kill('SIGKILL');
        reject(new HelperTimeout());
      }, timeoutMs);
      this.pending = {
        resolve: (a) => {
          clearTimeout(timer);
          resolve(a);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      child.stdin.write(`${JSON.stringify(request)}\n`);
    });
  }
}
