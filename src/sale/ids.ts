/**
 * Sale, item and code identifiers. A sale's id is its window's start in UTC,
 * written as YYYYMMDDHH, plus minutes and seconds only when the window length
 * needs them (the default hourly sale is "2026112416"). Every instance derives
 * the same id from the clock without asking anyone. An item id is
 * "<sale id>-<index>", so validating one needs no lookup.
 */
import { randomHex } from '../random.js';

/** 128 random bits per code. */
const CODE_BYTES = 16;

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
  const saleIdRegExp = new RegExp(`^${saleIdPattern}$`);

  // Every request asks for the current window: format it once per window.
  /** The sale window this instant falls in. */
  let last: SaleWindow | undefined;
  function windowContaining(epochMs: number): SaleWindow {
    const startsAt = Math.floor(epochMs / durationMs) * durationMs;
    if (last?.startsAt !== startsAt) {
      const compact = new Date(startsAt).toISOString().replace(/\D/g, ''); // YYYYMMDDHHmmssSSS
      last = { id: compact.slice(0, idLength), startsAt, endsAt: startsAt + durationMs };
    }
    return last;
  }

  /** The window a sale id names, or undefined if the id is not one this configuration issues. */
  function windowOfSale(saleId: string): SaleWindow | undefined {
    if (last?.id === saleId) return last; // every purchase asks, mostly about the current window
    if (!saleIdRegExp.test(saleId)) return undefined;
    const d = saleId.padEnd(14, '0');
    const startsAt = Date.UTC(
      +d.slice(0, 4),
      +d.slice(4, 6) - 1,
      +d.slice(6, 8),
      +d.slice(8, 10),
      +d.slice(10, 12),
      +d.slice(12, 14),
    );
    const window = windowContaining(startsAt);
    return window.id === saleId ? window : undefined;
  }

  return {
    windowContaining,
    windowOfSale,
    itemId: (saleId: string, index: number) => `${saleId}-${String(index).padStart(indexWidth, '0')}`,
    /** Splits an item id into its sale and index (format is checked by the route schema). */
    parseItemId(itemId: string): { saleId: string; index: number } {
      const dash = itemId.lastIndexOf('-');
      return { saleId: itemId.slice(0, dash), index: Number(itemId.slice(dash + 1)) };
    },
    /** 128 random bits, bound to its sale by the prefix and to a user and item by Redis and PostgreSQL. */
    newCode: (saleId: string) => `${saleId}-${randomHex(CODE_BYTES)}`,
    saleIdOfCode: (code: string) => code.slice(0, code.indexOf('-')),
    patterns: {
      itemId: `^${saleIdPattern}-\\d{${indexWidth}}$`,
      code: `^${saleIdPattern}-[0-9a-f]{32}$`,
    },
  };
}

export type Ids = ReturnType<typeof createIds>;
