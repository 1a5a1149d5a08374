/** Load profiles, after the system we follow: users, seconds, and how they behave. */
export interface Behaviour {
  name: string;
  share: number;
  checkout: number;
  purchase: number;
}

export interface Profile {
  users: number;
  duration: number;
  behaviours: Behaviour[];
}

const everyone: Behaviour[] = [{ name: 'buyer', share: 1, checkout: 1, purchase: 1 }];

export const profiles: Record<string, Profile> = {
  light: { users: 50, duration: 30, behaviours: everyone },
  medium: { users: 100, duration: 60, behaviours: everyone },
  heavy: { users: 500, duration: 300, behaviours: everyone },
  stress: { users: 1000, duration: 600, behaviours: everyone },
  realistic: {
    users: 100,
    duration: 60,
    behaviours: [
      { name: 'aggressive', share: 0.1, checkout: 0.9, purchase: 0.8 },
      { name: 'normal', share: 0.6, checkout: 0.6, purchase: 0.4 },
      { name: 'browser', share: 0.3, checkout: 0.3, purchase: 0.1 },
    ],
  },
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

/** A popular-item bias: low indexes are wanted far more often (a power law). */
export function popularIndex(items: number, random = Math.random): number {
  return Math.min(items - 1, Math.floor(items * random() ** 3));
}
