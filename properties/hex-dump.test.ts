import { describe, expect, it } from 'vitest';
import { decodeDump } from './qemu/hex-dump.ts';

/** A `read -v` dump line as qemu-io prints it (offset, `xx ` per byte, the text column). */
function line(offset: number, bytes: number[]): string {
  const hex = bytes.map((b) => `${b.toString(16).padStart(2, '0')} `).join('');
  const text = bytes.map((b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.')).join('');
  return `${offset.toString(16).padStart(8, '0')}:  ${hex} ${text}`;
}

describe('decodeDump (qemu-io read -v)', () => {
  it('decodes full lines, a short last line and offsets past 4 GiB, and keeps other lines as messages', () => {
    const bytes = Array.from({ length: 37 }, (_, i) => (i * 37 + 0x20) & 0xff);
    const base = 0x1_0000_0005; // a 9-digit offset
    const text = [
      line(base, bytes.slice(0, 16)),
      line(base + 16, bytes.slice(16, 32)),
      line(base + 32, bytes.slice(32)),
      `read 37/37 bytes at offset ${base}`,
      '37 bytes, 1 ops; 00.00 sec (1 KiB/sec and 1 ops/sec)',
      '',
    ].join('\n');
    const d = decodeDump(Buffer.from(text, 'latin1'));
    expect([...d.data]).toEqual(bytes);
    expect(d.messages).toMatch(/^read 37\/37 bytes at offset 4294967301\n37 bytes, 1 ops/);
    // bytes whose text column looks like hex digits and separators decode the same
    const tricky = [0x20, 0x20, 0x41, 0x3a, 0x30, 0x30, 0x20, 0x66];
    expect([...decodeDump(Buffer.from(`${line(0, tricky)}\n`, 'latin1')).data]).toEqual(tricky);
  });

  it('gives no bytes for an error reply, only the message', () => {
    const d = decodeDump(Buffer.from('read failed: Input/output error\n', 'latin1'));
    expect(d.data.length).toBe(0);
    expect(d.messages).toBe('read failed: Input/output error');
  });
});
