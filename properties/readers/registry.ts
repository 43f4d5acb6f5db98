/** Reader names the CLI (`--readers`) and case files (`readerDefect`) use. */
import { LibqcowReader } from './libqcow.ts';
import type { DiskReader } from './reader.ts';

export const READER_NAMES = ['libqcow'] as const;
export type ReaderName = (typeof READER_NAMES)[number];

export function isReaderName(s: string): s is ReaderName {
  return (READER_NAMES as readonly string[]).includes(s);
}

export function reader(name: ReaderName): DiskReader {
  switch (name) {
    case 'libqcow':
      return new LibqcowReader();
  }
}
