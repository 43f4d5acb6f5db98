import { describe, expect, it } from 'vitest';
import { Divergence } from './runner/divergence.ts';
import { commandKindOf, errorClass, signatureKey, signatureOf } from './runner/signature.ts';

describe('failure signature', () => {
  it('names the oracle, the command kind and the check category, never offsets', () => {
    const a = new Divergence({
      kind: 'qemu-img-check',
      stepIndex: 3,
      step: 'write -c -P 0x03 2097152 65536',
      expected: 'clean',
      observed: 'corrupt',
      check: { corruptions: 2, leaks: 1 },
    });
    const b = new Divergence({ ...a.details, step: 'write -c -P 0x09 0 512', stepIndex: 7 });
    expect(signatureOf(a, 'qemu-io')).toEqual({
      oracle: 'qemu-img-check',
      command: 'write-compressed',
      category: 'corruptions',
      subject: 'qemu-io',
    });
    expect(signatureKey(signatureOf(a, 'qemu-io'))).toBe(signatureKey(signatureOf(b, 'qemu-io')));
    expect(signatureKey(signatureOf(a, 'engine'))).not.toBe(signatureKey(signatureOf(a, 'qemu-io')));
  });

  it('reduces error messages to a class', () => {
    expect(errorClass('qcow2: offset 0x1200 is past the end [OUT_OF_RANGE]')).toBe('OUT_OF_RANGE');
    expect(errorClass("write failed at 4096: Input/output error 'x'")).toBe(
      errorClass("write failed at 512: Input/output error 'y'"),
    );
    expect(commandKindOf('! snapshot -a s1')).toBe('snapshot-apply');
    expect(commandKindOf('create')).toBe('create');
  });
});
