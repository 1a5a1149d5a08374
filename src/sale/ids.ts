/**
 * Sale, item and code identifiers. A sale's id is its window's start in UTC,
 * written as YYYYMMDDHH, plus minutes and seconds only when the window length
 * needs them (the default hourly sale is "2026112416"). Every instance derives
 * the same id from the clock without asking anyone. An item id is
 * "<sale id>-<index>", so validating one needs no lookup.
 */
import { randomFillSync } from 'node:crypto';

/**
 * Random bits for codes, drawn from the OS 4 KiB at a time: one
 * randomBytes(16) per checkout cost 7% of the service's CPU under load.
 */
const CODE_BYTES = 16;
const pool = Buffer.alloc(4096);
let offset = pool.length;
function randomHex(): string {
  if (offset + CODE_BYTES > pool.length) {
    randomFillSync(pool);
    offset = 0;
  }
  offset += CODE_BYTES;
  return pool.toString('hex', offset - CODE_BYTES, offset);
}

export interface SaleWindow {
  id: string;
  startsAt: number;
  endsAt: number;
}

export function createIds(saleDurationSec: number, saleItems: number) {
  const durationMs = saleDurationSec * 1000;
  const idLength = 10 + (saleDurationSec % 3600 === 0 ? 0 : 2) + (saleDurationSec % 60 === 0 ? 0 : 2);
  const indexWidth = Math.max(5, String(saleItems - 1).length);
  const saleIdPattern = `\\d{${idLength}}`;

  // Every request asks for the current window: format it once per window.
  let last: SaleWindow | undefined;
  function windowAt(epochMs: number): SaleWindow {
    const startsAt = Math.floor(epochMs / durationMs) * durationMs;
    if (last?.startsAt !== startsAt) {
      const compact = new Date(startsAt).toISOString().replace(/\D/g, ''); // YYYYMMDDHHmmssSSS
      last = { id: compact.slice(0, idLength), startsAt, endsAt: startsAt + durationMs };
    }
    return last;
  }

  /** The window a sale id names, or undefined if the id is not one this configuration issues. */
  function windowOf(saleId: string): SaleWindow | undefined {
    if (!new RegExp(`^${saleIdPattern}$`).test(saleId)) return undefined;
    const d = saleId.padEnd(14, '0');
    const startsAt = Date.UTC(
      +d.slice(0, 4),
      +d.slice(4, 6) - 1,
      +d.slice(6, 8),
      +d.slice(8, 10),
      +d.slice(10, 12),
      +d.slice(12, 14),
    );
    const window = windowAt(startsAt);
    return window.id === saleId ? window : undefined;
  }

  return {
    windowAt,
    windowOf,
    itemId: (saleId: string, index: number) => `${saleId}-${String(index).padStart(indexWidth, '0')}`,
    /** Splits an item id into its sale and index (format is checked by the route schema). */
    parseItemId(itemId: string): { saleId: string; index: number } {
      const dash = itemId.lastIndexOf('-');
      return { saleId: itemId.slice(0, dash), index: Number(itemId.slice(dash + 1)) };
    },
    /** 128 random bits, bound to its sale by the prefix and to a user and item by Redis and PostgreSQL. */
    newCode: (saleId: string) => `${saleId}-${randomHex()}`,
    saleIdOfCode: (code: string) => code.slice(0, code.indexOf('-')),
    patterns: {
      saleId: `^${saleIdPattern}$`,
      itemId: `^${saleIdPattern}-\\d{${indexWidth}}$`,
      code: `^${saleIdPattern}-[0-9a-f]{32}$`,
    },
  };
}

export type Ids = ReturnType<typeof createIds>;
