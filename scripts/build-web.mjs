// Builds the storefront (src/web/page) into dist/src/web/public: one
// minified script and one stylesheet under assets/, named by their content
// hash (so they are served as immutable), and index.html pointing at them.
// Called by prepare.mjs; type-checked on its own (the page runs in browsers).
import { execSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename } from 'node:path';

import { build } from 'esbuild';

const page = 'src/web/page';
const out = 'dist/src/web/public';

execSync(`npx tsc -p ${page}`, { stdio: 'inherit' });
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
const result = await build({
  entryPoints: { app: `${page}/main.ts`, style: `${page}/style.css` },
  bundle: true,
  minify: true,
  format: 'esm',
  target: ['es2022'],
  outdir: `${out}/assets`,
  entryNames: '[name]-[hash]',
  metafile: true,
  logLevel: 'warning',
});
const asset = (ext) => `/assets/${basename(Object.keys(result.metafile.outputs).find((f) => f.endsWith(ext)))}`;
const html = readFileSync(`${page}/index.html`, 'utf8')
  .replace('{{js}}', asset('.js'))
  .replace('{{css}}', asset('.css'));
writeFileSync(`${out}/index.html`, html);
// Asked for by every browser: a 404 would be a console error on every visit.
copyFileSync(`${page}/favicon.svg`, `${out}/favicon.svg`);
