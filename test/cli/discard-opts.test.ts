/** qemu-io's -d and --image-opts discard options mapped to the engine's (src/cli/discard-opts.ts). */
import { describe, expect, it } from 'vitest';
import { discardOptionsOf } from '../../src/cli/discard-opts.ts';
import { discardPassthrough } from '../../src/engine/refcounts.ts';

describe('discard options', () => {
  it('-d: unmap|on set the flag, ignore|off clear it; unset keeps the tool default', () => {
    expect(discardOptionsOf(undefined, undefined, true)).toEqual({ unmap: true });
    expect(discardOptionsOf('ignore', undefined, true)).toEqual({ unmap: false });
    expect(discardOptionsOf('off', undefined, true)).toEqual({ unmap: false });
    expect(discardOptionsOf('on', undefined, false)).toEqual({ unmap: true });
    expect(discardOptionsOf('unmap', undefined, false)).toEqual({ unmap: true });
  });

  it('--image-opts: discard= overrides -d; pass-discard-* take QEMU booleans', () => {
    const o = discardOptionsOf(
      'unmap',
      'driver=qcow2,file.filename=x,discard=ignore,pass-discard-request=on,pass-discard-snapshot=no,pass-discard-other=true',
      true,
    );
    expect(o).toEqual({ unmap: false, passRequest: true, passSnapshot: false, passOther: true });
  });

  it('bad values: the words QEMU uses', () => {
    expect(() => discardOptionsOf(undefined, 'file.filename=x,pass-discard-other=maybe', true)).toThrow(
      "Parameter 'pass-discard-other' expects 'on' or 'off'",
    );
    expect(() => discardOptionsOf(undefined, 'file.filename=x,discard=maybe', true)).toThrow(
      'Invalid discard option',
    );
  });

  it("QEMU's passthrough defaults: request follows the unmap flag, snapshot on, other off", () => {
    expect(discardPassthrough({ unmap: true })).toEqual({
      never: false,
      always: true,
      request: true,
      snapshot: true,
      other: false,
    });
    expect(discardPassthrough({ unmap: false }).request).toBe(false);
    expect(discardPassthrough({ unmap: false, request: true, snapshot: false, other: true })).toEqual({
      never: false,
      always: true,
      request: true,
      snapshot: false,
      other: true,
    });
  });
});
