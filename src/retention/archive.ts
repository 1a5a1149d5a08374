/**
 * Archives: a retired partition is written as `<table>.csv.gz` (PostgreSQL's
 * own CSV through COPY, gzip-compressed) next to `<table>.manifest.json`,
 * which records its sales, columns, row count, size and SHA-256. CSV.gz, not
 * Parquet: COPY produces it exactly as PostgreSQL spells each value and reads
 * it back the same way (restore is one COPY FROM); zcat, psql, DuckDB, pandas
 * and spreadsheets open it with nothing installed; and it streams from COPY
 * to disk in constant memory with Node's own zlib. Parquet would compress
 * better, but needs a writer library and a type mapping of its own, for
 * files that are read rarely, by people investigating.
 *
 * Both files are written under a temporary name, flushed to disk and renamed,
 * so a file with the final name is always complete.
 *
 * An archive is written by the service that runs the retention pass, on the
 * cores that serve checkouts, so it is made cheap, slow and out of the way on
 * purpose (measured with `npm run bench -- --retention`, docs/PERFORMANCE.md):
 * gzip at level 1, COPY's CSV read at a slow pace (archivePace), and all of it
 * on a worker thread (archive-worker.ts), off the event loop, which lives as
 * long as the service and keeps its PostgreSQL connection between passes.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open, readFile, rename, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Worker } from 'node:worker_threads';
import { createGunzip, createGzip } from 'node:zlib';

import { ATTEMPT_COLUMNS, type Partition, type Partitions, type RetiredExporter } from '../db/partitions.js';

export interface Manifest {
  format: 'csv.gz';
  file: string;
  table: string;
  sales: string[];
  columns: string[];
  rows: number;
  bytes: number;
  sha256: string;
  archived_at: string;
}

/**
 * gzip level 1, not the default 6: a 500,000-row partition (41 MB of CSV)
 * costs 0.35–0.6 s of compression instead of ~1.0 s, for a file 11% larger
 * (10.3 MB instead of 9.3 MB). Checkout p99 in a window with a pass, against
 * one without: 2.6× at level 6, 1.6× at level 1 (median of six rounds each).
 */
const GZIP_LEVEL = 1;
/**
 * The pace at which an archive reads its partition: 2 MB of CSV a second, so
 * that PostgreSQL's COPY and the compression take a thin slice of the cores
 * for a while rather than a thick one briefly. The target is checkout's p99
 * during a pass, and what a pass costs checkout a second grows with the bytes
 * it reads a second: at 8 MB/s a pass took that p99 to 1.05–1.31× of without,
 * from run to run; at 2 MB/s, 0.98–1.05× in three runs, for the same CPU in all
 * (docs/PERFORMANCE.md). A partition too big to be read at that pace within
 * LONGEST_ARCHIVE_MS is read faster, its size on disk in that time: its CSV
 * is smaller (0.6 of it here: a row's header, line pointer and index entry
 * outweigh what its id and timestamp gain as text), so every archive ends in
 * time. A busy hour's partition, ~36 million attempts (~5 GB on disk, ~3 GB
 * of CSV), is read at ~8 MB/s, in about six minutes.
 */
const CSV_BYTES_PER_SEC = 2 * 2 ** 20;
export const LONGEST_ARCHIVE_MS = 10 * 60_000;

/** Bytes of CSV a second at which to archive a partition of `bytesOnDisk`: the pace above, or enough to end in time. */
function archivePace(bytesOnDisk: number): number {
  return Math.max(CSV_BYTES_PER_SEC, bytesOnDisk / (LONGEST_ARCHIVE_MS / 1000));
}

/** Passes chunks on at no more than `bytesPerSec` on average since the first. */
function paced(bytesPerSec: number): Transform {
  const started = performance.now();
  let passed = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      passed += chunk.length;
      const wait = started + (passed / bytesPerSec) * 1000 - performance.now();
      if (wait > 1) setTimeout(() => done(null, chunk), wait);
      else done(null, chunk);
    },
  });
}

export const manifestPath = (archive: string) => archive.replace(/\.csv\.gz$/, '') + '.manifest.json';

async function durable(tmp: string, final: string) {
  const handle = await open(tmp, 'r');
  await handle.sync().finally(() => handle.close());
  await rename(tmp, final);
}

/** What the archive worker is asked to write, and what it wrote. */
export interface ExportJob {
  table: string;
  file: string;
  /** The pace: bytes of CSV a second (archivePace). */
  bytesPerSec: number;
}
export interface Written {
  rows: number;
  bytes: number;
  sha256: string;
}

/** Writes a retired partition's CSV, gzipped, into `file`; runs in the archive worker (archive-worker.ts). */
export async function writeCsvGz(exporter: RetiredExporter, { table, file, bytesPerSec }: ExportJob): Promise<Written> {
  const hash = createHash('sha256');
  let bytes = 0;
  const measure = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      hash.update(chunk);
      bytes += chunk.length;
      done(null, chunk);
    },
  });
  const pace = paced(bytesPerSec);
  const [rows] = await Promise.all([
    exporter.export(table, pace),
    pipeline(pace, createGzip({ level: GZIP_LEVEL }), measure, createWriteStream(file)),
  ]);
  return { rows, bytes, sha256: hash.digest('hex') };
}

/**
 * The archive worker (archive-worker.ts), which runs writeCsvGz: parsing
 * COPY's stream is JavaScript, one message a row (~0.5 s of CPU for 500,000
 * rows), which on the event loop made the loop 4–9 points busier during a
 * pass in the bench; on a worker, 0–5. It is started with the service, not
 * by each pass: without a thread's start-up and a new PostgreSQL backend at
 * the start of every pass, checkout's p99 during a pass against without fell
 * from 1.45× to 1.24× (docs/PERFORMANCE.md). A worker that dies is started
 * again by the next archive. Unreferenced: a process that stops mid-archive
 * does not wait for it, and leaves only a `.partial` file that the next pass
 * writes again.
 */
export function createArchiver(databaseUrl: string, checkMs: number) {
  const waiting = new Map<number, { resolve: (w: Written) => void; reject: (err: Error) => void }>();
  let next = 0;
  let worker: Worker | undefined;

  function start(): Worker {
    const started = new Worker(new URL('./archive-worker.js', import.meta.url), {
      workerData: { databaseUrl, checkMs },
    });
    started.unref();
    started.on('message', ({ id, written, error }: { id: number; written?: Written; error?: string }) => {
      const job = waiting.get(id);
      waiting.delete(id);
      if (written) job?.resolve(written);
      else job?.reject(new Error(error));
    });
    const failAll = (err: Error) => {
      if (worker === started) worker = undefined;
      for (const job of waiting.values()) job.reject(err);
      waiting.clear();
    };
    started.once('error', failAll);
    started.once('exit', (code) => failAll(new Error(`the archive worker exited (${code}) without an answer`)));
    return started;
  }
  worker = start();

  return {
    /** Writes a retired partition's CSV, gzipped, into `job.file`, on the worker. */
    write(job: ExportJob): Promise<Written> {
      const running = (worker ??= start());
      return new Promise((resolve, reject) => {
        const id = next++;
        waiting.set(id, { resolve, reject });
        running.postMessage({ id, job });
      });
    },
    /** Stops the worker, and with it its connection; an archive under way fails, and the next pass writes it again. */
    async close(): Promise<void> {
      const stopping = worker;
      worker = undefined;
      await stopping?.terminate();
    },
  };
}

export type Archiver = ReturnType<typeof createArchiver>;

/** Writes the archive of a retired partition and its manifest; resolves once both are on disk. */
export async function writeArchive(
  archiver: Archiver,
  dir: string,
  partition: Pick<Partition, 'table' | 'saleIds' | 'bytes'>,
  now: Date,
): Promise<Manifest> {
  await mkdir(dir, { recursive: true });
  const file = join(dir, `${partition.table}.csv.gz`);
  const tmp = `${file}.partial`;
  const { rows, bytes, sha256 } = await archiver.write({
    table: partition.table,
    file: tmp,
    bytesPerSec: archivePace(partition.bytes),
  });
  await durable(tmp, file);
  const manifest: Manifest = {
    format: 'csv.gz',
    file: basename(file),
    table: partition.table,
    sales: partition.saleIds,
    columns: [...ATTEMPT_COLUMNS],
    rows,
    bytes,
    sha256,
    archived_at: now.toISOString(),
  };
  const manifestFile = manifestPath(file);
  await writeFile(`${manifestFile}.partial`, JSON.stringify(manifest, null, 2) + '\n');
  await durable(`${manifestFile}.partial`, manifestFile);
  return manifest;
}

/** Reads an archive's manifest and checks the archive against its size and SHA-256. */
export async function verifyArchive(archive: string): Promise<Manifest> {
  const manifest = JSON.parse(await readFile(manifestPath(archive), 'utf8')) as Manifest;
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of createReadStream(archive) as AsyncIterable<Buffer>) {
    hash.update(chunk);
    bytes += chunk.length;
  }
  const sha256 = hash.digest('hex');
  if (bytes !== manifest.bytes || sha256 !== manifest.sha256) {
    throw new Error(
      `${archive} does not match its manifest (${bytes} bytes, sha256 ${sha256.slice(0, 12)}; ` +
        `manifest: ${manifest.bytes} bytes, sha256 ${manifest.sha256.slice(0, 12)})`,
    );
  }
  return manifest;
}

/**
 * Loads an archive into a new table `table` for investigation, after checking
 * it against its manifest; refuses (and leaves no table) when the row count
 * differs. Resolves to the manifest.
 */
export async function restoreArchive(
  partitions: Pick<Partitions, 'importArchive'>,
  archive: string,
  table: string,
): Promise<Manifest> {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(table)) {
    throw new Error(`table name must be 1-63 characters of [a-z0-9_], not starting with a digit, got "${table}"`);
  }
  const manifest = await verifyArchive(archive);
  const source = createReadStream(join(dirname(archive), basename(archive)));
  const gunzip = createGunzip();
  source.on('error', (err) => gunzip.destroy(err));
  await partitions.importArchive(table, source.pipe(gunzip), manifest.rows);
  return manifest;
}
