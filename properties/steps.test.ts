import { describe, expect, it } from 'vitest';
import { formatStep, formatStepLine, parseStep } from './steps.ts';

describe('step syntax', () => {
  const lines = [
    'write -P 0x5a 4096 65536',
    'write -z 0 512',
    'write -z -u 0 65536',
    'write -c -P 0x01 65536 131072',
    'discard 100 200',
    'read -P 0x00 0 1048576',
    'read 512 4096',
    'write -s w17.bin 4096 8192',
    'write -c -s w3.bin 65536 65536',
    'flush',
    'close',
    'snapshot -c s1',
    'snapshot -a s1',
    'snapshot -d s1',
    'truncate 1048576',
    'check',
    'check -r leaks',
    'check -r all',
    'convert',
    'convert -c',
    "qemu-io -c 'write -P 0x11 0 512' -c 'read -P 0x11 0 512' -c 'discard 0 65536' -c 'write -z -u 0 512'",
  ];
  it.each(lines)('round-trips %s', (line) => {
    expect(formatStep(parseStep(line))).toBe(line);
  });
  it('accepts the refusal marker', () => {
    expect(formatStepLine(parseStep('! snapshot -c s2'), true)).toBe('! snapshot -c s2');
  });
  it('rejects what it does not know', () => {
    expect(() => parseStep('frobnicate 1 2')).toThrow();
    expect(() => parseStep('write 0 512')).toThrow();
  });
});
