/** Load profiles, after the system we follow: users, seconds, how they behave and which items they want. */
export interface Behaviour {
  name: string;
  share: number;
  /** Chance to check out an item of the page just read. */
  checkout: number;
  /** Chance to buy, after a checkout that returned a code. */
  purchase: number;
}

export interface Profile {
  users: number;
  duration: number;
  behaviours: Behaviour[];
  /** Users crowd the popular items (realistic); otherwise they look anywhere in the sale. */
  popular: boolean;
}

const everyone: Behaviour[] = [{ name: 'buyer', share: 1, checkout: 1, purchase: 1 }];

export const profiles: Record<string, Profile> = {
  light: { users: 50, duration: 30, behaviours: everyone, popular: false },
  medium: { users: 100, duration: 60, behaviours: everyone, popular: false },
  heavy: { users: 500, duration: 300, behaviours: everyone, popular: false },
  stress: { users: 1000, duration: 600, behaviours: everyone, popular: false },
  realistic: {
    users: 100,
    duration: 60,
    behaviours: [
      { name: 'aggressive', share: 0.1, checkout: 0.9, purchase: 0.8 },
      { name: 'normal', share: 0.6, checkout: 0.6, purchase: 0.4 },
      { name: 'browser', share: 0.3, checkout: 0.3, purchase: 0.1 },
    ],
    popular: true,
  },
  // A crowd at the waiting room (WAITING_ROOM=on): run by crowd.ts, not run.ts.
  crowd: { users: 50_000, duration: 600, behaviours: everyone, popular: false },
};

/** The behaviour of user number i of n, so the shares hold exactly. */
export function behaviourOf(profile: Profile, i: number, n: number): Behaviour {
  let edge = 0;
  for (const b of profile.behaviours) {
    edge += b.share * n;
    if (i < edge) return b;
  }
  return profile.behaviours.at(-1)!;
}

export const PAGE = 20;

/** Where a user looks: the item it came for, and the offset of the page around it. */
export function look(profile: Profile, totalItems: number, random = Math.random) {
  // realistic: a power law, low indexes are wanted far more often; otherwise uniform.
  const wanted = Math.floor(totalItems * (profile.popular ? random() ** 3 : random()));
  return { wanted, offset: Math.max(0, Math.min(totalItems - PAGE, wanted - PAGE / 2)) };
}

// Now and then a realistic user acts on a stale page and tries the popular item
// anyway, so losing the race for it (409 ITEM_SOLD) stays part of the load.
const STALE = 0.1;

/**
 * The item to check out from the page just read: in `realistic` the popular
 * item the user came for while the page shows it unsold; otherwise any unsold
 * item of the page, uniformly. None when the page is all sold.
 */
export function pick(
  profile: Profile,
  items: { id: string; sold: boolean }[],
  wanted: number,
  random = Math.random,
): string | undefined {
  const target = items[wanted];
  if (profile.popular && target && (!target.sold || random() < STALE)) return target.id;
  const unsold = items.filter((i) => !i.sold);
  return unsold[Math.floor(random() * unsold.length)]?.id;
}
