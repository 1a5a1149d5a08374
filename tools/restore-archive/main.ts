/**
 * npm run restore-archive -- <archive.csv.gz> <table>
 *
 * Loads an archived checkout_attempts partition into a new table of the
 * database at DATABASE_URL, for investigation, after checking the file
 * against its manifest (size, SHA-256) and the rows loaded against its row
 * count. Exit codes: 0 restored, 1 failed, 2 usage.
 */
import { loadConfig } from '../../src/config.js';
import { createDb } from '../../src/db/db.js';
import { partitionsTable } from '../../src/db/partitions.js';
import { createMetrics } from '../../src/metrics/metrics.js';
import { restoreArchive } from '../../src/retention/archive.js';

const [archive, table] = process.argv.slice(2);
if (!archive || !table) {
  process.stderr.write('usage: npm run restore-archive -- <archive.csv.gz> <table>\n');
  process.exit(2);
}
const config = loadConfig();
const db = createDb(config, createMetrics());
try {
  const manifest = await restoreArchive(partitionsTable(db, config), archive, table);
  process.stdout.write(`restored ${manifest.rows} rows of ${manifest.sales.join(', ')} into ${table}\n`);
} catch (err) {
  process.stderr.write(`restore-archive: ${(err as Error).message}\n`);
  process.exitCode = 1;
} finally {
  await db.close();
}
