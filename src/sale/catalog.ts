/**
 * Generated items: a name and an SVG image, both derived from the item id
 * alone, so any instance renders the same item without a lookup and nothing
 * outside the service is needed.
 */
import { createHash } from 'node:crypto';

const ADJECTIVES = [
  'Amber',
  'Bold',
  'Brisk',
  'Calm',
  'Crimson',
  'Dapper',
  'Electric',
  'Fuzzy',
  'Golden',
  'Humble',
  'Icy',
  'Jolly',
  'Lucky',
  'Mellow',
  'Nimble',
  'Quiet',
  'Rapid',
  'Silver',
  'Sunny',
  'Velvet',
];
const MATERIALS = ['Bamboo', 'Canvas', 'Ceramic', 'Copper', 'Cotton', 'Glass', 'Leather', 'Linen', 'Oak', 'Steel'];
const THINGS = [
  'Backpack',
  'Bottle',
  'Candle',
  'Clock',
  'Headphones',
  'Kettle',
  'Lamp',
  'Mug',
  'Notebook',
  'Pillow',
  'Scarf',
  'Sneakers',
  'Speaker',
  'Teapot',
  'Umbrella',
  'Wallet',
  'Watch',
  'Backgammon',
  'Bicycle',
  'Camera',
];

function digest(itemId: string): Buffer {
  return createHash('sha256').update(itemId).digest();
}

export function itemName(itemId: string): string {
  const h = digest(itemId);
  return `${ADJECTIVES[h[0]! % ADJECTIVES.length]} ${MATERIALS[h[1]! % MATERIALS.length]} ${THINGS[h[2]! % THINGS.length]}`;
}

export const imageUrl = (itemId: string) => `/items/${itemId}/image.svg`;

export function itemImageSvg(itemId: string): string {
  const h = digest(itemId);
  const hue = ((h[3]! << 8) | h[4]!) % 360;
  const shapes = [0, 1, 2, 3]
    .map((i) => {
      const x = 20 + (h[5 + i]! % 160);
      const y = 20 + (h[9 + i]! % 160);
      const r = 12 + (h[13 + i]! % 36);
      return `<circle cx="${x}" cy="${y}" r="${r}" fill="hsl(${(hue + i * 40) % 360} 70% ${45 + i * 8}%)" opacity="0.85"/>`;
    })
    .join('');
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="200" height="200" viewBox="0 0 200 200">` +
    `<rect width="200" height="200" fill="hsl(${hue} 40% 92%)"/>${shapes}` +
    `<text x="100" y="190" font-family="sans-serif" font-size="12" text-anchor="middle" fill="#333">${itemName(itemId)}</text>` +
    `</svg>`
  );
}
