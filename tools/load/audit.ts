/**
 * The end-of-sale audit: what the load tool saw against what the service
 * says. Pure, so a test can feed it a doctored observation.
 */
export interface Bought {
  code: string;
  /** As the purchase's 200 says, not as the tool asked. */
  userId: string;
  itemId: string;
  /** What the code was checked out for. */
  checkedOut: { userId: string; itemId: string };
}

export interface Observed {
  bought: Bought[];
  /** Purchases whose outcome stayed unknown (no answer or 5xx, even when re-sent). */
  unknown: number;
}

export interface SaleState {
  itemsSold: number;
  soldItems: Set<string>;
}

export interface AuditResult {
  ok: boolean;
  confirmed: number;
  unknown: number;
  problems: string[];
  /** What could not be checked, and why; not a failure by itself. */
  notes: string[];
}

/**
 * `before` and `after` are the sale's state around the run, so a second run on
 * the same sale is judged on its own purchases; `after` is an error when the
 * service did not answer after the run, and then only what the tool saw is
 * checked (and the audit fails: it could not be finished). `userLimit` is the
 * limit as the service stated it, undefined when no user reached it.
 * `exclusive`: the tool was the only buyer during the run, so the sale's count
 * must have grown by exactly what it saw confirmed (plus at most the unknown
 * outcomes).
 */
export function audit(
  observed: Observed,
  before: SaleState,
  after: SaleState | Error,
  userLimit: number | undefined,
  exclusive: boolean,
): AuditResult {
  const problems: string[] = [];
  const notes: string[] = [];
  const byItem = new Map<string, string>();
  const perUser = new Map<string, Set<string>>();
  for (const b of observed.bought) {
    const asked = b.checkedOut;
    if (b.itemId !== asked.itemId || b.userId !== asked.userId) {
      problems.push(
        `code ${b.code} was checked out for ${asked.itemId} by ${asked.userId}, but confirmed ${b.itemId} to ${b.userId}`,
      );
    }
    const owner = byItem.get(b.itemId);
    if (owner !== undefined && owner !== b.code) problems.push(`item ${b.itemId} was confirmed to two codes`);
    byItem.set(b.itemId, b.code);
    perUser.set(b.userId, (perUser.get(b.userId) ?? new Set()).add(b.itemId));
  }
  if (userLimit === undefined) {
    const most = Math.max(0, ...[...perUser.values()].map((items) => items.size));
    notes.push(
      `the user limit was not checked: no user reached it, and the service states it nowhere else (most confirmed to one user: ${most})`,
    );
  }
  for (const [user, items] of perUser) {
    if (userLimit !== undefined && items.size > userLimit) {
      problems.push(`user ${user} was confirmed ${items.size} items, limit ${userLimit}`);
    }
  }
  for (const item of byItem.keys()) {
    if (before.soldItems.has(item)) problems.push(`item ${item} was sold before the run, and confirmed again in it`);
    else if (!(after instanceof Error) && !after.soldItems.has(item)) {
      problems.push(`item ${item} was confirmed but the service lists it unsold`);
    }
  }
  if (after instanceof Error) {
    problems.push(
      `the sale could not be read after the run (${after.message}): its sold items and count were not checked`,
    );
  } else if (exclusive) {
    const sold = after.itemsSold - before.itemsSold;
    if (sold < byItem.size || sold > byItem.size + observed.unknown) {
      const unknown = observed.unknown > 0 ? ` and ${observed.unknown} with unknown outcome` : '';
      problems.push(
        `the service counts ${sold} items sold during the run, the tool saw ${byItem.size} confirmed${unknown}` +
          ' (if others were buying too, pass --shared)',
      );
    }
    // Only without other buyers: one of them could buy between reading the count and the pages.
    if (after.soldItems.size !== after.itemsSold) {
      problems.push(`items_sold is ${after.itemsSold} but ${after.soldItems.size} items are flagged sold`);
    }
  }
  return { ok: problems.length === 0, confirmed: byItem.size, unknown: observed.unknown, problems, notes };
}
