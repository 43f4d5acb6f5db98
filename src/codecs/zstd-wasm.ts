/**
 * Synchronous access to libzstd compiled to WebAssembly, from `@bokuweb/zstd-wasm`.
 *
 * Why this package: it ships zstd.wasm inside the npm tarball (no download at install or run time,
 * so it installs offline), it exposes both ZSTD_compress and ZSTD_decompress, and it has no
 * dependencies. Its public `init()` is asynchronous only because it reads the file with
 * fs/promises and uses WebAssembly.instantiate; Node can compile and instantiate a module
 * synchronously (`new WebAssembly.Module` / `new WebAssembly.Instance`), and the package's
 * Emscripten glue honours the standard `Module.instantiateWasm` hook. So at import time we read
 * the .wasm next to the package entry point, instantiate it synchronously through that hook, and
 * the runtime is initialised before this module finishes evaluating: the codecs need no
 * `await init()` and cannot be used before initialisation.
 *
 * The runtime is instantiated on first use (`zstdRuntime()`), not at import: compiling the wasm
 * costs tens of milliseconds, which every CLI start would pay for images that are not zstd.
 *
 * We drive the raw exports ourselves (not the package's `decompress`, which needs an exact frame
 * length and allocates by the frame's content size, or 1 MiB when the frame does not say).
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { UnsupportedError } from '../errors.ts';

/** The WebAssembly JS API as far as we use it (tsconfig has no DOM lib, @types/node 20 has none). */
interface WasmInstance {
  exports: object;
}
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => WasmInstance;
}
const wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

/** The part of the Emscripten module object that we use (exports are prefixed with `_`). */
interface ZstdModule {
  HEAPU8: Uint8Array;
  calledRun?: boolean;
  instantiateWasm?: (imports: object, receive: (instance: WasmInstance) => void) => object;
  init: (bytes?: Uint8Array) => unknown;
  _malloc(size: number): number;
  _free(ptr: number): void;
  _ZSTD_isError(code: number): number;
  _ZSTD_compressBound(size: number): number;
  _ZSTD_compress(dst: number, dstCapacity: number, src: number, srcSize: number, level: number): number;
  _ZSTD_decompress(dst: number, dstCapacity: number, src: number, srcSize: number): number;
}

function load(): ZstdModule {
  const require = createRequire(import.meta.url);
  // The "node" export of the package is dist/common/index.node.js; zstd.js and zstd.wasm sit next
  // to it. Requiring zstd.js by its path shares the module instance with the package's own API.
  const dir = dirname(require.resolve('@bokuweb/zstd-wasm'));
  const glue = require(join(dir, 'zstd.js')) as { Module: ZstdModule };
  const mod = glue.Module;
  if (mod.calledRun) return mod; // already initialised (e.g. by the package's own init())
  const bytes = readFileSync(join(dir, 'zstd.wasm'));
  mod.instantiateWasm = (imports, receive) => {
    const instance = new wasm.Instance(new wasm.Module(bytes), imports);
    receive(instance);
    return instance.exports;
  };
  mod.init();
  if (!mod.calledRun) {
    throw new UnsupportedError(
      'ZSTD_INIT_FAILED',
      'zstd WebAssembly runtime did not initialise synchronously',
    );
  }
  // A later call of the package's async init() must not instantiate a second copy under the
  // already bound exports.
  mod.init = () => ({});
  return mod;
}

let runtime: ZstdModule | undefined;

/** The initialised runtime, instantiated synchronously on the first call. */
export function zstdRuntime(): ZstdModule {
  runtime ??= load();
  return runtime;
}

/** ZSTD_isError results are (size_t)-code; on wasm32 the i32 comes back negative. */
export function zstdErrorCode(ret: number): number {
  return zstdRuntime()._ZSTD_isError(ret) ? -(ret | 0) : 0;
}

/** zstd_errors.h codes we name in messages. */
export const ZSTD_ERROR_DST_SIZE_TOO_SMALL = 70;
