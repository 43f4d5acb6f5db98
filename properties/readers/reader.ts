/**
 * Readers: implementations that can only read qcow2 (forensic libraries and the like). They never
 * drive a sequence; at checkpoints they read the implementation under test's image — the whole
 * guest disk, through the backing chain where they support one — and the reader oracle
 * (reader-oracle.ts) compares their bytes with the model's. A reader says which layout features it
 * cannot read (declared, or learned from a clean refusal); everything else it reads must match.
 */
import type { ImageLayout } from '../layout.ts';

/** What a reader is asked to read, and what it should find. */
export interface ReadRequest {
  /** The image file (closed or flushed). */
  image: string;
  /** The backing chain, nearest first (files the reader opens as parents). */
  parents: string[];
  /** The password of an encrypted image. */
  password?: string;
  /** The guest disk's size in the model. */
  size: number;
  /** The model's bytes (`ctx.model.disk.read`). */
  expected: (offset: number, length: number) => Uint8Array;
}

export type ReadOutcome =
  | { status: 'ok' }
  /** A clean refusal of a feature the reader does not support ("unsupported … features"). */
  | { status: 'refused'; feature: string; message: string }
  /** Wrong bytes (or a wrong size): the first differing offset, 16 bytes from there each side. */
  | { status: 'mismatch'; offset: number; expected: string; observed: string; category: string }
  /** A crash, a hang or an error that is not a refusal. */
  | { status: 'failed'; how: 'hang' | 'crash' | 'error'; message: string };

export interface DiskReader {
  /** Short name (`libqcow`), as on the command line and in case files. */
  readonly name: string;
  /** The reader's version (`20201213`); fails loudly when the reader is missing. */
  version(): Promise<string>;
  /** Features of the layout the reader declares it cannot read (no attempt is made). */
  unsupported(layout: ImageLayout): string[];
  /** Whether it can read internal snapshots (their copies in the model are then checked). */
  readonly readsSnapshots: boolean;
  read(request: ReadRequest): Promise<ReadOutcome>;
  /** Stop helper processes. */
  shutdown(): Promise<void>;
}

/** The reader could not be started at all (not installed): fails the campaign, loudly. */
export class ReaderUnavailableError extends Error {
  constructor(reader: string, detail: string) {
    super(`reader ${reader} is not available: ${detail}`);
    this.name = 'ReaderUnavailableError';
  }
}

/** Hex of 16 bytes from `at` (for expected/observed in divergences). */
export function hex16(bytes: Uint8Array, at: number): string {
  return Array.from(bytes.subarray(at, at + 16), (b) => b.toString(16).padStart(2, '0')).join(' ');
}

/**
 * A coarse class of wrong data, for the failure signature: what the reader returned where the
 * model had zeros or data (`data-where-zeros`, `zeros-where-data`, `other-data`), or `noise`. `QFI\xfb` (the qcow2 magic, qcow2.txt "Header") at a sector start in
 * what was read means the reader returned the image's own header as guest data.
 */
export function wrongDataCategory(expected: Uint8Array, observed: Uint8Array, at: number): string {
  for (let s = at - (at % 512); s + 4 <= observed.length; s += 512) {
    if (
      observed[s] === 0x51 &&
      observed[s + 1] === 0x46 &&
      observed[s + 2] === 0x49 &&
      observed[s + 3] === 0xfb
    )
      return 'image-header-as-data';
  }
  // Bytes like ciphertext (64 bytes from the mismatch nearly all different) are noise, wherever they
  // stand: decrypting with the wrong method, say. The model's data are never like that.
  const window = observed.subarray(at, Math.min(observed.length, at + 64));
  if (window.length === 64 && new Set(window).size >= 40) return 'noise';
  const end = Math.min(expected.length, at + 512);
  const wantZero = expected.subarray(at, end).every((b) => b === 0);
  const gotZero = observed.subarray(at, Math.min(observed.length, at + 512)).every((b) => b === 0);
  if (wantZero) return 'data-where-zeros';
  if (gotZero) return 'zeros-where-data';
  return 'other-data';
}
