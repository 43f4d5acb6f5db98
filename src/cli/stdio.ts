/**
 * Output plumbing shared by every verb: stdout/stderr as strings, so tests can run main()
 * in-process. A module of its own, free of engine imports, so that the CLI's entry point (and
 * `--version`) loads nothing of the engine (see scripts/build.mjs: one chunk per verb).
 */
export interface Io {
  out(s: string): void;
  err(s: string): void;
}

export const stdio: Io = {
  out: (s) => process.stdout.write(s),
  err: (s) => process.stderr.write(s),
};
