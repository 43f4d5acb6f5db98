/**
 * Typed errors. Every failure the engine or the CLI reports carries a stable string `code`
 * (for scripts and tests) and structured `data` (the offending field, value, offset).
 */
export type ErrorData = Record<string, unknown>;

export class Qcow2Error extends Error {
  readonly code: string;
  readonly data: ErrorData;

  constructor(code: string, message: string, data: ErrorData = {}) {
    super(message);
    this.name = 'Qcow2Error';
    this.code = code;
    this.data = data;
  }
}

/** Metadata that contradicts the format: carries the host offset where it was found. */
export class CorruptionError extends Qcow2Error {
  readonly offset: number;

  constructor(code: string, message: string, offset: number, data: ErrorData = {}) {
    super(code, `${message} (at host offset 0x${offset.toString(16)})`, { ...data, offset });
    this.name = 'CorruptionError';
    this.offset = offset;
  }
}

/** A header field QEMU would refuse at open time. */
export class HeaderError extends Qcow2Error {
  constructor(code: string, message: string, field: string, value: unknown) {
    super(code, message, { field, value });
    this.name = 'HeaderError';
  }
}

/** The image uses something this engine does not (yet) handle. */
export class UnsupportedError extends Qcow2Error {
  constructor(code: string, message: string, data: ErrorData = {}) {
    super(code, message, data);
    this.name = 'UnsupportedError';
  }
}

/** A caller passed something out of range (guest offset beyond the disk, bad option, ...). */
export class ArgumentError extends Qcow2Error {
  constructor(code: string, message: string, data: ErrorData = {}) {
    super(code, message, data);
    this.name = 'ArgumentError';
  }
}

/** An operating-system level failure (open, read, write), with the path and operation. */
export class IoError extends Qcow2Error {
  constructor(code: string, message: string, data: ErrorData = {}) {
    super(code, message, data);
    this.name = 'IoError';
  }
}

export function isQcow2Error(e: unknown): e is Qcow2Error {
  return e instanceof Qcow2Error;
}
