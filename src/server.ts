/**
 * The process: reads the environment, migrates, builds the app, listens, and
 * drains on SIGTERM/SIGINT (stop accepting, finish in-flight requests, flush
 * the write queues, close the pools, exit 0). With WORKERS=N, this process
 * migrates, then forks N workers (node:cluster) that share the port, passes
 * the signal on, and exits once they all have.
 */
import cluster from 'node:cluster';

import { pino } from 'pino';

import { buildApp } from './app.js';
import { ConfigError, describeUrl, loadConfig, type Config } from './config.js';
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
    const reason = (err as Error).message;
    // A worker leaves the one line to its supervisor, which stops every worker.
    if (cluster.isWorker) process.send!({ startupFailed: reason }, () => process.exit(1));
    else {
      log.fatal({ err }, `start-up failed: ${reason}`);
      process.exit(1);
    }
    return;
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

/** Deaths within this window that mean a crash loop, not bad luck. */
const CRASH_LOOP = { deaths: 5, withinMs: 30_000 };

/**
 * Forks the workers and keeps them running: one that dies after it listened
 * is replaced, after a backoff that doubles with each recent death; one that
 * dies before it listened (the port is taken, Redis refused) or a crash loop
 * stops them all with exit 1, since another fork would fail the same way.
 */
function supervise(workers: number, log: pino.Logger) {
  let stopping = false;
  const deaths: number[] = [];
  const listened = new Set<number>();
  const startupFailures = new Map<number, string>();

  const fork = () => {
    if (stopping) return;
    const worker = cluster.fork();
    worker.on('message', (message: { startupFailed?: string }) => {
      if (message.startupFailed) startupFailures.set(worker.id, message.startupFailed);
    });
    worker.once('listening', () => {
      listened.add(worker.id);
      log.info({ worker_pid: worker.process.pid }, 'worker listening');
    });
  };
  const stopAll = async () => {
    stopping = true;
    const exits = Object.values(cluster.workers ?? {}).map(
      (w) => new Promise((resolve) => (w!.isDead() ? resolve(undefined) : w!.once('exit', resolve))),
    );
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM');
    await Promise.all(exits);
  };
  const giveUp = (message: string) => {
    log.fatal(message);
    void stopAll().then(() => process.exit(1));
  };

  for (let i = 0; i < workers; i++) fork();
  cluster.on('exit', (worker, code, signal) => {
    if (stopping) return;
    const workerPid = worker.process.pid; // pino adds the supervisor's own `pid` to every line
    if (!listened.delete(worker.id)) {
      const reason = startupFailures.get(worker.id) ?? `worker exited with code ${code ?? signal}`;
      return giveUp(`start-up failed: ${reason}`);
    }
    const now = Date.now();
    deaths.push(now);
    while (deaths[0]! <= now - CRASH_LOOP.withinMs) deaths.shift();
    if (deaths.length >= CRASH_LOOP.deaths) {
      return giveUp(`workers keep dying: ${deaths.length} deaths within ${CRASH_LOOP.withinMs / 1000} s; stopping`);
    }
    const delayMs = Math.min(10_000, 250 * 2 ** (deaths.length - 1));
    log.error({ worker_pid: workerPid, code, signal, restart_in_ms: delayMs }, 'worker died, starting another');
    setTimeout(fork, delayMs);
  });
  onSignal(log, stopAll);
}

await main();
