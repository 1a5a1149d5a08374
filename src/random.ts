/**
 * Random hex strings (codes, lock owner tokens) drawn from the OS 4 KiB at a
 * time: under load, one randomBytes() call per request cost 2-7% of the
 * service's CPU, most of it per call rather than per byte.
 */
import { randomFillSync } from 'node:crypto';

const pool = Buffer.alloc(4096);
let offset = pool.length;

export function randomHex(bytes: number): string {
  if (offset + bytes > pool.length) {
    randomFillSync(pool);
    offset = 0;
  }
  offset += bytes;
  return pool.toString('hex', offset - bytes, offset);
}
