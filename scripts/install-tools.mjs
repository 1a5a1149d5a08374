// Installs the Debian tools a command drives, when they are missing and we
// can (root): the tests use real Prometheus, promtool, Alertmanager, amtool,
// their own redis-server (and a Redis Cluster of them), HAProxy in front of
// several instances, PgBouncer, and Debian's chromium for the storefront's
// browser tests (`node scripts/install-tools.mjs test`); the bench uses wrk
// (`node scripts/install-tools.mjs bench`).
import { execSync } from 'node:child_process';

const needs = {
  test: {
    promtool: 'prometheus',
    prometheus: 'prometheus',
    amtool: 'prometheus-alertmanager',
    'prometheus-alertmanager': 'prometheus-alertmanager',
    'redis-server': 'redis-server',
    pgbouncer: 'pgbouncer',
    chromium: 'chromium', // the storefront's browser tests (test/web.test.ts), driven by playwright-core
    haproxy: 'haproxy',
  },
  bench: { wrk: 'wrk' },
};
const wanted = needs[process.argv[2]];
if (!wanted) {
  console.error(`usage: install-tools.mjs ${Object.keys(needs).join('|')}`);
  process.exit(2);
}

const missing = Object.keys(wanted).filter((tool) => {
  try {
    execSync(`command -v ${tool}`, { stdio: 'ignore' });
    return false;
  } catch {
    return true;
  }
});
if (missing.length > 0) {
  const packages = [...new Set(missing.map((tool) => wanted[tool]))];
  if (process.getuid?.() !== 0) {
    console.error(`missing ${missing.join(', ')}: install the Debian packages ${packages.join(' ')}`);
    process.exit(1);
  }
  console.log(`installing ${packages.join(' ')} (for ${missing.join(', ')})`);
  execSync('apt-get update -qq', { stdio: 'inherit' });
  execSync(`DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ${packages.join(' ')}`, { stdio: 'inherit' });
}
