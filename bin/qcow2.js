#!/usr/bin/env node
// The qcow2 CLI: runs the compiled bundle (dist/, see bin/load-cli.js). The fuzz harness
// (`fuzz`, `repro`, `crashtest`) loads engines from TypeScript sources, so those verbs run through tsx.
import { loadCli } from './load-cli.js';

const argv = process.argv.slice(2);
if (['fuzz', 'repro', 'crashtest'].includes(argv[0])) process.env.QCOW2_TSX = '1';
const { main } = await loadCli('qcow2', 'src/cli/main.ts');
process.exitCode = await main(argv);
