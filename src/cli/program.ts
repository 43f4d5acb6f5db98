/**
 * Which program we speak as. `qcow2` is this project's own CLI (messages carry the error code,
 * `qcow2: ... [CODE]`); called as `qemu-img` or `qemu-io` (bin/qcow2.js looks at the name it was
 * started by) messages are QEMU's to the letter: `qemu-img: ...`, no code.
 */
export type Program = 'qcow2' | 'qemu-img' | 'qemu-io';

let current: Program = 'qcow2';

export function setProgram(p: Program): void {
  current = p;
}

export function program(): Program {
  return current;
}

/** True when speaking as one of QEMU's tools (exact QEMU messages, no error codes). */
export function asQemu(): boolean {
  return current !== 'qcow2';
}

/** The program from the name an executable was started by (`/usr/bin/qemu-img` → qemu-img). */
export function programFromPath(argv1: string | undefined): Program {
  const base = (argv1 ?? '').replace(/^.*\//, '').replace(/\.[cm]?[jt]s$/, '');
  return base === 'qemu-img' || base === 'qemu-io' ? base : 'qcow2';
}
