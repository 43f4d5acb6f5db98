/**
 * The executable's body: speak as the program named by the path we were started by (qcow2,
 * qemu-img or qemu-io; see program.ts) and run its command line. bin/qcow2.js loads this through
 * tsx; the iotests runner may run an esbuild bundle of it (same code, faster start).
 */
import { main } from './main.ts';
import { programFromPath, setProgram } from './program.ts';

const prog = programFromPath(process.argv[1]);
setProgram(prog);
const argv = process.argv.slice(2);
process.exitCode = await main(prog === 'qemu-io' ? ['io', ...argv] : argv);
