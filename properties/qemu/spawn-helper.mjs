// The harness's process launcher: a small, long-lived Node process that runs qemu-img/qemu-io
// (and any tool) on request. Forking costs in proportion to the forking process's memory: a
// campaign worker holding reference disks and engine caches (hundreds of MiB) pays 50–100 ms a
// spawn, this process (~40 MiB) a few. Protocol, one JSON object a line each way:
//   request  {id, file, args, cwd?, input?, mergeStderr?, detached?, dieWithParent?}
//   reply    {id, exitCode, signal, stdout, stderr} or {id, error}  (error: could not start)
//   request  {kill: id}: SIGKILL a running request (detached: its whole process group); no reply
//            of its own (the request's reply follows when it is gone)
// When its stdin closes (the harness exited or was killed), or it gets SIGINT/SIGTERM/SIGHUP (a
// Ctrl-C reaches the whole foreground process group, this process included), it kills what it
// started and exits. A request with dieWithParent runs under `setpriv --pdeathsig KILL`: the kernel
// kills it when this process dies, however it dies (SIGKILL included) — for servers that would
// otherwise outlive everything (qemu-nbd -t).
import { spawn, spawnSync } from 'node:child_process';
import * as readline from 'node:readline';

const running = new Set();
const byId = new Map();
const reply = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);

function kill(child) {
  try {
    if (child.detachedGroup && child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
    else child.kill('SIGKILL');
  } catch {
    child.kill('SIGKILL');
  }
}

/** util-linux's setpriv, when it can set a parent-death signal (Linux). */
let setpriv;
function deathSignalPrefix() {
  if (setpriv === undefined) {
    const r = spawnSync('setpriv', ['--pdeathsig', 'KILL', 'true'], { stdio: 'ignore' });
    setpriv = r.status === 0 ? ['setpriv', '--pdeathsig', 'KILL'] : [];
  }
  return setpriv;
}

function run(req) {
  const command = [...(req.dieWithParent ? deathSignalPrefix() : []), req.file, ...req.args];
  const argv = req.mergeStderr
    ? ['sh', ['-c', 'exec "$0" "$@" 2>&1', ...command]]
    : [command[0], command.slice(1)];
  let child;
  try {
    child = spawn(argv[0], argv[1], {
      cwd: req.cwd,
      stdio: ['pipe', 'pipe', 'pipe'],
      detached: req.detached === true,
    });
  } catch (e) {
    reply({ id: req.id, error: String(e && e.message ? e.message : e) });
    return;
  }
  running.add(child);
  child.detachedGroup = req.detached === true;
  byId.set(req.id, child);
  const out = [];
  const err = [];
  let failedToStart;
  child.stdout.on('data', (d) => out.push(d));
  child.stderr.on('data', (d) => err.push(d));
  child.stdin.on('error', () => {});
  child.stdin.end(req.input ?? '');
  child.on('error', (e) => {
    failedToStart = String(e.message);
  });
  child.on('close', (code, signal) => {
    running.delete(child);
    byId.delete(req.id);
    if (failedToStart !== undefined && code === null) reply({ id: req.id, error: failedToStart });
    else
      reply({
        id: req.id,
        exitCode: code,
        signal,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      });
  });
}

const lines = readline.createInterface({ input: process.stdin });
lines.on('line', (line) => {
  if (line.trim() === '') return;
  const req = JSON.parse(line);
  if (req.kill !== undefined) {
    const child = byId.get(req.kill);
    if (child) kill(child);
  } else run(req);
});
function killAllAndExit(code) {
  for (const child of running) kill(child);
  process.exit(code);
}
lines.on('close', () => killAllAndExit(0));
for (const [signal, number] of [
  ['SIGINT', 2],
  ['SIGTERM', 15],
  ['SIGHUP', 1],
])
  process.on(signal, () => killAllAndExit(128 + number));
