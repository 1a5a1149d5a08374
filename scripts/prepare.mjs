// Run before `npm start` and `npm test`: install dependencies when they are
// missing or older than the lockfile, then build (tsc is incremental) and copy
// the non-TypeScript assets (Lua scripts, SQL migrations) next to the output,
// and bundle the storefront page.
import { execSync } from 'node:child_process';
import { cpSync, existsSync, statSync } from 'node:fs';

const installed = 'node_modules/.package-lock.json';
if (!existsSync(installed) || statSync(installed).mtimeMs < statSync('package-lock.json').mtimeMs) {
  execSync('npm ci --no-audit --no-fund', { stdio: 'inherit' });
}
execSync('npx tsc -p .', { stdio: 'inherit' });
cpSync('src', 'dist/src', {
  recursive: true,
  filter: (path) => !/\.ts$/.test(path) && !path.startsWith('src/web/page'),
});
// The storefront's page: bundled, hashed asset names (scripts/build-web.mjs).
await import('./build-web.mjs');
