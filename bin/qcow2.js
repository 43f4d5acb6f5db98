#!/usr/bin/env node
// Runs the TypeScript CLI from a checkout through tsx's loader (no build step). Called by the name
// qemu-img or qemu-io (the package's other bin entries, or a symlink), it behaves as that tool.
import { register } from 'tsx/esm/api';

register();
await import('../src/cli/entry.ts');
