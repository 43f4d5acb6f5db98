import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { createBackingFile } from './runner/backing-setup.ts';
import { baseDisk } from './model/backing-files.ts';
import type { BackingLayout } from './layout.ts';

describe('createBackingFile (raw)', () => {
  it('holds the writes in order over zeros, ranges longer than its reused 1 MiB piece included', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'backing-setup-'));
    try {
      const backing: BackingLayout = {
        format: 'raw',
        size: (5 << 20) + 700, // rounded up to a sector: 5 MiB + 1024
        writes: [
          { offset: 0, length: 1 << 20, pattern: 0x42 },
          { offset: 1000, length: (3 << 20) + 17, pattern: 0x11 },
          { offset: (2 << 20) - 5, length: 10, pattern: 0x11 },
          { offset: (3 << 20) + 3, length: (1 << 20) + 1, pattern: 0xee },
          { offset: 512, length: 512, pattern: 0 },
        ],
      };
      const file = path.join(dir, 'base.raw');
      await createBackingFile(file, backing);
      const bytes = fs.readFileSync(file);
      expect(bytes.length).toBe((5 << 20) + 1024);
      const want = new Uint8Array(bytes.length);
      want.set(baseDisk(backing).read(0, backing.size));
      expect(Buffer.compare(bytes, want)).toBe(0);
      expect(bytes[511]).toBe(0x42);
      expect(bytes[(3 << 20) + 3]).toBe(0xee);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
