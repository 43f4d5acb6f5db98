#!/usr/bin/env node
// The qcow2 CLI: runs the compiled bundle (dist/, see bin/load-cli.js). Called by the name qemu-img
// or qemu-io (the package's other bin entries, or a symlink), it speaks as that tool (program.ts).
// The fuzz harness (`fuzz`, `repro`, `crashtest`) loads engines from TypeScript sources, so those
// verbs run through tsx. CommonJS (bin/package.json): no ES module loader at start.
'use strict';
const { loadCli } = require('./load-cli.js');

const argv = process.argv.slice(2);
if (['fuzz', 'repro', 'crashtest'].includes(argv[0])) process.env.QCOW2_TSX = '1';
loadCli('qcow2', 'src/cli/main.ts').then(async (cli) => {
  const prog = cli.programFromPath(process.argv[1]);
  cli.setProgram(prog);
  process.exitCode = await cli.main(prog === 'qemu-io' ? ['io', ...argv] : argv);
});
