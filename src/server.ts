/**
 * The process: reads the environment, migrates, builds the app, listens, and
 * drains on SIGTERM/SIGINT (stop accepting, finish in-flight requests, flush
 * the write queues, close the pools, exit 0). With WORKERS=N, this process
 * migrates, then forks N workers (node:cluster) that share the port, passes
 * the signal on, and exits once they all have.
 */
import cluster from 'node:cluster';

import { pino } from 'pino';

import { buildApp, describeUrl } from './app.js';
import { ConfigError, loadConfig, type Config } from './config.js';
import { migrate, MigrationChanged } from './db/migrate.js';

async function migrateWhenReachable(config: Config, log: pino.Logger) {
  for (let attempt = 1; ; attempt++) {
    try {
      // Session advisory locks (the migration lock) do not survive PgBouncer's
      // transaction pooling: migrations may take a direct connection.
      const applied = await migrate(config.DATABASE_MIGRATION_URL || config.DATABASE_URL);
      if (applied.length > 0) log.info({ applied }, 'database migrated');
      return;
    } catch (err) {
      if (err instanceof MigrationChanged) {
        log.fatal({ err }, `start-up refused: ${err.message}`);
        process.exit(1);
      }
      if (attempt === 1 || attempt % 10 === 0) {
        log.error({ err }, `PostgreSQL unreachable at ${describeUrl(config.DATABASE_URL)}, retrying`);
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}

async function main() {
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`flashsale: invalid configuration: ${err.message}\n`);
    process.exit(1);
  }
  const log = pino({ level: config.LOG_LEVEL });
  if (cluster.isPrimary) await migrateWhenReachable(config, log);
  if (cluster.isPrimary && config.WORKERS > 1) return supervise(config.WORKERS, log);

  const app = await buildApp({ config, logger: log });
  try {
    await app.listen({ port: config.PORT, host: config.HOST });
  } catch (err) {
    log.fatal({ err: (err as Error).message }, `start-up failed: ${(err as Error).message}`);
    process.exit(1);
  }
  onSignal(log, () => app.close());
}

/** Runs `stop` on the first SIGTERM or SIGINT, then exits 0 (or 1 if it failed). */
function onSignal(log: pino.Logger, stop: () => Promise<unknown>) {
  let stopping = false;
  const handle = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'draining');
    stop().then(
      () => {
        log.info('stopped');
        process.exit(0);
      },
      (err: unknown) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => handle('SIGTERM'));
  process.on('SIGINT', () => handle('SIGINT'));
}

function supervise(workers: number, log: pino.Logger) {
  let stopping = false;
  for (let i = 0; i < workers; i++) cluster.fork();
  cluster.on('exit', (worker, code, signal) => {
    if (stopping) return;
    // A worker that dies is replaced; PostgreSQL and the reconciler make that safe.
    log.error({ pid: worker.process.pid, code, signal }, 'worker died, starting another');
    cluster.fork();
  });
  onSignal(log, async () => {
    stopping = true;
    const exits = Object.values(cluster.workers ?? {}).map(
      (w) => new Promise((resolve) => (w!.isDead() ? resolve(undefined) : w!.once('exit', resolve))),
    );
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM');
    await Promise.all(exits);
  });
}

await main();
