/**
 * npm run load -- --url http://127.0.0.1:8080 --profile light|medium|heavy|stress|realistic
 *                 [--duration s] [--users n] [--user-limit n] [--shared] [--out file.json]
 * Rehearses a sale against a running service, prints a report and an audit,
 * writes the same report as JSON, and exits 1 when the audit fails.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { parseArgs } from 'node:util';

import { audit } from './audit.js';
import { profiles } from './profiles.js';
import { print, summary } from './report.js';
import { run, saleState } from './run.js';

const { values } = parseArgs({
  options: {
    url: { type: 'string', default: 'http://127.0.0.1:8080' },
    profile: { type: 'string', default: 'light' },
    duration: { type: 'string' },
    users: { type: 'string' },
    'user-limit': { type: 'string', default: '10' },
    shared: { type: 'boolean', default: false },
    out: { type: 'string' },
  },
});
const profile = profiles[values.profile];
if (!profile) {
  process.stderr.write(`unknown profile "${values.profile}": one of ${Object.keys(profiles).join(', ')}\n`);
  process.exit(2);
}
const users = Number(values.users ?? profile.users);
const duration = Number(values.duration ?? profile.duration);
const tty = process.stdout.isTTY;
process.stdout.write(`${values.profile}: ${users} users for ${duration} s against ${values.url}\n`);

const result = await run({
  url: values.url,
  profile,
  users,
  duration,
  onTick(elapsed, requests, errors) {
    const rate = (requests / elapsed).toFixed(0);
    if (tty) {
      const width = 30;
      const done = Math.min(width, Math.round((elapsed / duration) * width));
      process.stdout.write(
        `\r[${'#'.repeat(done)}${'.'.repeat(width - done)}] ${elapsed.toFixed(0)}s ${rate} req/s ${errors} errors `,
      );
    } else {
      process.stdout.write(`${elapsed.toFixed(0)}s ${requests} requests ${rate} req/s ${errors} errors\n`);
    }
  },
});
if (tty) process.stdout.write('\n');
const state = await saleState(values.url, result.saleId, result.totalItems);
const report = summary(result, audit(result.bought, state, Number(values['user-limit']), !values.shared));
print(report, (line) => process.stdout.write(`${line}\n`));
const out = values.out ?? `.load-results/${new Date().toISOString().replace(/[:.]/g, '-')}.json`;
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, `${JSON.stringify(report, null, 2)}\n`);
process.stdout.write(`report written to ${out}\n`);
process.exit(report.audit.ok ? 0 : 1);
