// Module loader hooks of the campaign workers' bundle (worker-entry.ts registers them): an import
// of one of the bundled modules' source URLs (the engine, src/image.ts, and its LUKS module) is
// answered with the module already in the bundle, so that the engine adapter's import by URL gets
// the very module objects the bundle runs. Any other import goes on as usual. Plain JavaScript:
// hooks run on Node's loader thread, before anything could compile TypeScript.

/** source URL → { name, exports } (the bundle's globalThis.__qcow2Bundled[name] holds the module). */
let bundled = {};
const SCHEME = 'qcow2-bundled:';

export function initialize(data) {
  bundled = data ?? {};
}

export async function resolve(specifier, context, next) {
  const b = bundled[specifier];
  if (b) return { url: `${SCHEME}${b.name}`, shortCircuit: true };
  return next(specifier, context);
}

export async function load(url, context, next) {
  if (!url.startsWith(SCHEME)) return next(url, context);
  const name = url.slice(SCHEME.length);
  const entry = Object.values(bundled).find((b) => b.name === name);
  const names = entry ? entry.exports : [];
  const source =
    `const m = globalThis.__qcow2Bundled[${JSON.stringify(name)}];\n` +
    names
      .map((n) =>
        n === 'default' ? 'export default m.default;\n' : `export const ${n} = m[${JSON.stringify(n)}];\n`,
      )
      .join('');
  return { format: 'module', source, shortCircuit: true };
}
