/** Implementation names the CLI and the case files use. */
import type { ImplementationUnderTest } from './adapter.ts';
import { EngineImplementation } from './engine.ts';
import { MixedImplementation } from './mixed.ts';
import { qemuIoImplementation } from './qemu-io.ts';

export const IMPLEMENTATION_NAMES = ['engine', 'qemu-io', 'mixed'] as const;
export type ImplementationName = (typeof IMPLEMENTATION_NAMES)[number];

export function isImplementationName(s: string): s is ImplementationName {
  return (IMPLEMENTATION_NAMES as readonly string[]).includes(s);
}

export function implementation(name: ImplementationName): ImplementationUnderTest {
  switch (name) {
    case 'engine':
      return new EngineImplementation();
    case 'qemu-io':
      return qemuIoImplementation();
    case 'mixed':
      return new MixedImplementation();
  }
}
