/**
 * Recording what a command session sends, for benchmarks and profiles that replay the same stream
 * through the program alone (scripts/bench-harness.ts, scripts/profile-qemu-io.ts).
 */
import * as fs from 'node:fs';
import { CommandSession } from './command-session.ts';

/** One image's command stream as a session sent it. */
export interface RecordedStream {
  /** The program's command line. */
  argv: readonly string[];
  commands: string[];
  /** Stamp files named by `write -s`, with their bytes at the time they were sent. */
  files: Map<string, Buffer>;
}

/**
 * Records every command line sent into the stream `current()` returns (none: not recorded).
 * Returns the function that stops recording.
 */
export function recordCommands(current: () => RecordedStream | undefined): () => void {
  CommandSession.tap = (session, command) => {
    const stream = current();
    if (!stream) return;
    if (stream.commands.length === 0) stream.argv = session.argv;
    stream.commands.push(command);
    const file = / -s (\S+)/.exec(command)?.[1];
    if (file && fs.existsSync(file)) stream.files.set(file, fs.readFileSync(file));
  };
  return () => {
    CommandSession.tap = undefined;
  };
}
