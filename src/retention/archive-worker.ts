/**
 * The archive's export on a thread of its own (archive.ts says why), for as
 * long as the service runs: for each job posted, COPY's CSV, paced, through
 * gzip into a file, over the connection its exporter keeps; it posts back what
 * it wrote, or why it could not.
 *
 * On Linux the nice value belongs to a thread, so this one lowers its own to
 * 19: on a saturated host the export then waits for the CPU that checkouts do
 * not need (on this shared machine its effect on p99 was within the noise).
 * Elsewhere setpriority would renice the whole process, so it is left alone.
 */
import { platform, setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';

import { retiredExporter } from '../db/partitions.js';
import { writeCsvGz, type ExportJob } from './archive.js';

if (platform() === 'linux') setPriority(19);
const { databaseUrl, checkMs } = workerData as { databaseUrl: string; checkMs: number };
const exporter = retiredExporter(databaseUrl, checkMs);
parentPort!.on('message', ({ id, job }: { id: number; job: ExportJob }) => {
  writeCsvGz(exporter, job).then(
    (written) => parentPort!.postMessage({ id, written }),
    (err: unknown) => parentPort!.postMessage({ id, error: err instanceof Error ? err.message : String(err) }),
  );
});
