/**
 * npm run load -- [--url http://127.0.0.1:8080] [--profile light|medium|heavy|stress|realistic|crowd]
 *                 [--duration s] [--users n] [--shared] [--out file.json] [--prequeue s] [--burst share] [--spread s]
 * Rehearses a sale against a running service, prints a report and an audit,
 * writes the same report as JSON. Exit 0: audit passed; 1: audit failed;
 * 2: bad arguments, no service or no active sale, or any other error; 130:
 * interrupted by Ctrl-C (the report is still printed and written).
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';

import { HELP, parseOptions } from './args.js';
import { audit } from './audit.js';
import { createClient } from './client.js';
import { crowdAudit, runCrowd } from './crowd.js';
import { checkOut } from './out.js';
import { progress } from './progress.js';
import { print, summary } from './report.js';
import { run } from './run.js';
import { activeSale, saleState, saleStateAfter } from './sale.js';

const log = (line: string) => process.stdout.write(`${line}\n`);

/**
 * Ctrl-C. Once the run has started, the first one stops sending and the run
 * ends as usual (resends, report, audit, JSON); any other quits at once. The
 * progress line is ended first, so the shell's prompt starts on a clean line.
 */
const interrupt = { stop: undefined as AbortController | undefined, endLine: () => {} };
process.on('SIGINT', () => {
  interrupt.endLine();
  if (interrupt.stop && !interrupt.stop.signal.aborted) {
    interrupt.stop.abort();
    log('interrupted: stopping, re-sending purchases of unknown outcome, then the report (Ctrl-C again quits at once)');
    return;
  }
  process.exit(130);
});

async function main(): Promise<number> {
  const o = parseOptions(process.argv.slice(2));
  if (o === 'help') {
    process.stdout.write(HELP);
    return 0;
  }
  checkOut(o.out);
  // One socket per user: see client.ts.
  const client = createClient(o.url, o.users);
  try {
    const sale = await activeSale(client, o.url);
    if (o.profileName === 'crowd') {
      // The waiting room's rehearsal (crowd.ts): its own run and audit.
      const stopAt = sale.endsAt + o.duration * 1000;
      log(`crowd: ${o.users} users, ${o.burst * 100}% in the pre-queue of the sale after ${sale.id}, against ${o.url}`);
      const result = await runCrowd(sale, { origin: o.url, ...o, stopAt, log });
      const report = crowdAudit(result);
      for (const [key, value] of Object.entries(report)) log(`${key}: ${JSON.stringify(value)}`);
      writeFileSync(o.out, `${JSON.stringify(report, null, 2)}\n`);
      log(`report written to ${o.out}`);
      return report.ok ? 0 : 1;
    }
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
    const stop = new AbortController();
    Object.assign(interrupt, { stop, endLine: bar.done });
    const { users, profile } = o;
    const result = await run({ client, sale, profile, users, runId, stopAt, signal: stop.signal, onTick: bar.tick });
    bar.done();
    const after = await saleStateAfter(client, sale);
    const report = summary(
      {
        url: o.url,
        profile: o.profileName,
        users: o.users,
        duration: o.duration,
        runId,
        saleId: sale.id,
        stoppedAtSaleEnd,
        interrupted: stop.signal.aborted,
      },
      result,
      audit(result, before, after, result.userLimit, !o.shared),
    );
    print(report, log);
    writeFileSync(o.out, `${JSON.stringify(report, null, 2)}\n`);
    log(`report written to ${o.out}`);
    if (!report.audit.ok) return 1;
    return report.interrupted ? 130 : 0;
  } finally {
    await client.close();
  }
}

// Every error, expected or not, is one line and exit 2, never a stack trace.
main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    interrupt.endLine();
    process.stderr.write(`load: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(2);
  },
);
