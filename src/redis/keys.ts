/**
 * Every Redis key the service uses. All of a sale's keys share one hash tag,
 * {<prefix>:<sale id>}, so each script touches a single Redis Cluster slot.
 * User input reaches a key only after schema validation: user ids, codes and
 * IPs cannot contain braces, so they can never break out of the tag.
 */
export function saleKeys(prefix: string, saleId: string): SaleKeys {
  // Every checkout and purchase asks for the active sale's keys: built once, not per request
  // (a checkout through Redis cost 9–10% more CPU when each built its own: docs/ARCHITECTURE.md).
  if (last?.prefix !== prefix || last.saleId !== saleId) last = { prefix, saleId, keys: buildSaleKeys(prefix, saleId) };
  return last.keys;
}
let last: { prefix: string; saleId: string; keys: SaleKeys } | undefined;

function buildSaleKeys(prefix: string, saleId: string) {
  const tag = `${prefix}:{${saleId}}`;
  return Object.freeze({
    ready: `${tag}:ready`,
    sold: `${tag}:sold`,
    users: `${tag}:users`,
    codes: `${tag}:codes`,
    owners: `${tag}:owners`,
    rebuildLock: `${tag}:lock:rebuild`,
    reconcileLock: `${tag}:lock:reconcile`,
    purchaseLock: (code: string) => `${tag}:lock:code:${code}`,
    userBucket: (userId: string) => `${tag}:rl:user:${userId}`,
    codeBucket: (code: string) => `${tag}:rl:code:${code}`,
    ipBucket: (ip: string) => `${tag}:rl:ip:${ip}`,
  });
}

export type SaleKeys = ReturnType<typeof buildSaleKeys>;

/** The waiting room's keys for a sale: the sale's own hash tag, so its scripts also read `sold`. */
export function queueKeys(prefix: string, saleId: string) {
  const tag = `${prefix}:{${saleId}}`;
  return {
    sold: saleKeys(prefix, saleId).sold,
    state: `${tag}:q:state`,
    pre: `${tag}:q:pre`,
    users: `${tag}:q:users`,
    seq: `${tag}:q:seq`,
    log: `${tag}:q:log`,
    done: `${tag}:q:done`,
    lease: `${tag}:q:lease`,
    ipBucket: (ip: string) => `${tag}:q:rl:ip:${ip}`,
  };
}

export type QueueKeys = ReturnType<typeof queueKeys>;

/**
 * A sale's keys that live as long as the sale, the waiting room's included:
 * what retiring an ended sale unlinks. Its locks and rate-limit buckets are
 * left out: they expire within seconds.
 */
export function saleStateKeys(prefix: string, saleId: string): string[] {
  const sale = buildSaleKeys(prefix, saleId);
  const room = queueKeys(prefix, saleId);
  return [
    sale.ready,
    sale.sold,
    sale.users,
    sale.codes,
    sale.owners,
    room.state,
    room.pre,
    room.users,
    room.seq,
    room.log,
    room.done,
    room.lease,
  ];
}

/** The fleet-wide lock of a retention pass (src/retention/), outside any sale. */
export const retentionLockKey = (prefix: string) => `${prefix}:lock:retention`;
