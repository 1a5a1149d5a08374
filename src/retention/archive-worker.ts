/**
 * The archive's export on a thread of its own (archive.ts says why): COPY's
 * CSV, paced, through gzip into a file. Posts what it wrote; a failure reaches
 * archive.ts as the worker's error.
 *
 * On Linux the nice value belongs to a thread, so this one lowers its own to
 * 19: on a saturated host the export then waits for the CPU that checkouts do
 * not need (on this shared machine its effect on p99 was within the noise).
 * Elsewhere setpriority would renice the whole process, so it is left alone.
 */
import { platform, setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';

import { writeCsvGz, type ExportJob } from './archive.js';

if (platform() === 'linux') setPriority(19);
parentPort!.postMessage(await writeCsvGz(workerData as ExportJob));
