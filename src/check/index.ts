/** The consistency checker (qemu-img check). */
export { checkImage, readHeader, type CheckOptions, type CheckReport, type CheckResult } from './check.ts';
export { formatCheckHuman, formatCheckJson } from './format.ts';
