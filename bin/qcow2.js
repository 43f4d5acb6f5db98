#!/bin/sh
':' //; [ -z "$NODE_EXTRA_CA_CERTS" ] || exec env -u NODE_EXTRA_CA_CERTS QCOW2_EXTRA_CA_CERTS="$NODE_EXTRA_CA_CERTS" node --interrupt-budget=500000 "$0" "$@"; exec node --interrupt-budget=500000 "$0" "$@"
// The qcow2 CLI: runs the compiled bundle (dist/, see bin/load-cli.js). Called by the name qemu-img
// or qemu-io (the package's other bin entries, or a symlink), it speaks as that tool (program.ts).
// The fuzz harness (`fuzz`, `repro`, `crashtest`) loads engines from TypeScript sources, so those
// verbs run through tsx. CommonJS (bin/package.json): no ES module loader at start.
//
// Started as an executable, the two lines above are a shell script (to JavaScript, a string and a
// comment): Node reads and parses every certificate of NODE_EXTRA_CA_CERTS before running any
// script (about 40 ms of CPU for Debian's bundle, where `node -e 0` takes 15 ms without it), and
// the CLI opens no TLS connection, so node starts without it. Programs it runs get it back.
// --interrupt-budget: V8's, as bin/load-cli.js would set it (see there), given on the command line
// so that the start need not load node:v8 to set it.
'use strict';
if (process.env.QCOW2_EXTRA_CA_CERTS !== undefined) {
  process.env.NODE_EXTRA_CA_CERTS = process.env.QCOW2_EXTRA_CA_CERTS;
  delete process.env.QCOW2_EXTRA_CA_CERTS;
}
const { loadCli } = require('./load-cli.js');

const argv = process.argv.slice(2);
if (['fuzz', 'repro', 'crashtest'].includes(argv[0])) process.env.QCOW2_TSX = '1';
loadCli('qcow2', 'src/cli/main.ts').then(async (cli) => {
  const prog = cli.programFromPath(process.argv[1]);
  cli.setProgram(prog);
  process.exitCode = await cli.main(prog === 'qemu-io' ? ['io', ...argv] : argv);
});
