/**
 * Runs the harness without the main CLI: `tsx scripts/fuzz-cli.ts fuzz [options]` or
 * `tsx scripts/fuzz-cli.ts repro CASE.json [--impl …]` (same options as `qcow2 fuzz` / `qcow2 repro`).
 */
import { runFuzzCli, runReproCli } from '../properties/cli.ts';

const [command, ...rest] = process.argv.slice(2);
if (command === 'fuzz') process.exitCode = await runFuzzCli(rest);
else if (command === 'repro') process.exitCode = await runReproCli(rest);
else {
  process.stderr.write('usage: tsx scripts/fuzz-cli.ts fuzz|repro …\n');
  process.exitCode = 2;
}
