/**
 * npm run load -- --url http://127.0.0.1:8080 --profile light|medium|heavy|stress|realistic
 *                 [--duration s] [--users n] [--user-limit n] [--shared] [--out file.json]
 * Rehearses a sale against a running service, prints a report and an audit,
 * writes the same report as JSON. Exit 0: audit passed; 1: audit failed;
 * 2: bad arguments, no service or no active sale, or any other error.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

import { parseOptions } from './args.js';
import { audit } from './audit.js';
import { createClient } from './client.js';
import { progress } from './progress.js';
import { print, summary } from './report.js';
import { run } from './run.js';
import { activeSale, saleState } from './sale.js';

const log = (line: string) => process.stdout.write(`${line}\n`);

async function main(): Promise<number> {
  const o = parseOptions(process.argv.slice(2));
  // One socket per user: see client.ts.
  const client = createClient(o.url, o.users);
  try {
    const sale = await activeSale(client, o.url);
    // The audit judges this run by what changed, so earlier runs on the same sale do not count.
    const before = await saleState(client, sale);
    const runId = randomBytes(4).toString('hex');
    log(`${o.profileName}: ${o.users} users for ${o.duration} s against ${o.url}, sale ${sale.id}, run ${runId}`);
    // After its end the sale answers 404 and 410 to everything: stop there rather than measure that.
    const stopAt = Math.min(Date.now() + o.duration * 1000, sale.endsAt);
    const stoppedAtSaleEnd = stopAt === sale.endsAt;
    if (stoppedAtSaleEnd) {
      const left = ((sale.endsAt - Date.now()) / 1000).toFixed(0);
      log(`the sale ends at ${new Date(sale.endsAt).toISOString()}, in ${left} s: the run stops there`);
    }
    const bar = progress(stopAt, process.stdout.isTTY, (text) => process.stdout.write(text));
    const result = await run({ client, sale, profile: o.profile, users: o.users, runId, stopAt, onTick: bar.tick });
    bar.done();
    const after = await saleState(client, sale);
    const report = summary(
      {
        url: o.url,
        profile: o.profileName,
        users: o.users,
        duration: o.duration,
        runId,
        saleId: sale.id,
        stoppedAtSaleEnd,
      },
      result,
      audit(result, before, after, o.userLimit, !o.shared),
    );
    print(report, log);
    const out = o.out ?? `.load-results/${new Date().toISOString().replace(/[:.]/g, '-')}.json`;
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(out, `${JSON.stringify(report, null, 2)}\n`);
    log(`report written to ${out}`);
    return report.audit.ok ? 0 : 1;
  } finally {
    await client.close();
  }
}

// Every error, expected or not, is one line and exit 2, never a stack trace.
main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`load: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(2);
  },
);
