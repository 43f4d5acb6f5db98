#!/usr/bin/env node
// Runs the TypeScript CLI from a checkout through tsx's loader (no build step). Called by the name
// qemu-img or qemu-io (the package's other bin entries, or a symlink), it behaves as that tool.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli/main.ts');
const { programFromPath, setProgram } = await import('../src/cli/program.ts');
const prog = programFromPath(process.argv[1]);
setProgram(prog);
const argv = process.argv.slice(2);
process.exitCode = await main(prog === 'qemu-io' ? ['io', ...argv] : argv);
