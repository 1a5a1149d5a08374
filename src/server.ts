/**
 * The process: reads the environment, migrates, builds the app, listens, and
 * drains on SIGTERM/SIGINT (stop accepting, finish in-flight requests, flush
 * the write queues, close the pools, exit 0).
 */
import { pino } from 'pino';

import { buildApp, describeUrl } from './app.js';
import { ConfigError, loadConfig, type Config } from './config.js';
import { migrate } from './db/migrate.js';

async function migrateWhenReachable(config: Config, log: pino.Logger) {
  for (let attempt = 1; ; attempt++) {
    try {
      const applied = await migrate(config.DATABASE_URL);
      if (applied.length > 0) log.info({ applied }, 'database migrated');
      return;
    } catch (err) {
      const message = (err as Error).message;
      if (attempt === 1 || attempt % 10 === 0) {
        log.error({ err: message }, `PostgreSQL unreachable at ${describeUrl(config.DATABASE_URL)}, retrying`);
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
  await migrateWhenReachable(config, log);
  const app = await buildApp({ config, logger: log });
  await app.listen({ port: config.PORT, host: config.HOST });

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'draining');
    app.close().then(
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
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

await main();
