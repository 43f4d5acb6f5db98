/**
 * Output plumbing shared by every verb: stdout/stderr as strings, so tests can run main()
 * in-process. A module of its own, free of engine imports, so that the CLI's entry point (and
 * `--version`) loads nothing of the engine (verbs are loaded on demand, see main.ts).
 *
 * Writes go straight to the file descriptor (fs.writeSync), as qemu-img's stdio does: creating
 * process.stdout for a pipe builds a net.Socket and the stream machinery (a few ms of every
 * start, issue 12), and synchronous writes are complete when the command returns. A descriptor
 * that is non-blocking (EAGAIN) falls back to the stream, and stays with it to keep the order.
 * A reader gone away (EPIPE, `qcow2 map | head`) ends the output quietly, as for qemu-img.
 */
import * as fs from 'node:fs';

export interface Io {
  out(s: string): void;
  err(s: string): void;
}

type State = 'direct' | 'stream' | 'closed';

function writer(fd: 1 | 2): (s: string) => void {
  let state: State = 'direct';
  const stream = () => (fd === 1 ? process.stdout : process.stderr);
  return (s) => {
    let rest: string | Buffer = s;
    if (state === 'direct') {
      const buf = Buffer.from(s);
      let done = 0;
      try {
        while (done < buf.length) done += fs.writeSync(fd, buf, done);
        return;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'EPIPE') state = 'closed';
        else if (code === 'EAGAIN') {
          state = 'stream';
          rest = buf.subarray(done);
        } else throw e;
      }
    }
    if (state === 'stream') stream().write(rest);
  };
}

export const stdio: Io = { out: writer(1), err: writer(2) };
