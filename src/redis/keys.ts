/**
 * Every Redis key the service uses. All of a sale's keys share one hash tag,
 * {<prefix>:<sale id>}, so each script touches a single Redis Cluster slot.
 * User input reaches a key only after schema validation: user ids, codes and
 * IPs cannot contain braces, so they can never break out of the tag.
 */
export function saleKeys(prefix: string, saleId: string) {
  const tag = `${prefix}:{${saleId}}`;
  return {
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
  };
}

export type SaleKeys = ReturnType<typeof saleKeys>;

/** The fleet-wide lock of a retention pass (src/retention/), outside any sale. */
export const retentionLockKey = (prefix: string) => `${prefix}:lock:retention`;
