/**
 * Where the benches' results go: each bench owns a section of
 * docs/PERFORMANCE.md between two marker comments and rewrites only that.
 */
import { readFileSync, writeFileSync } from 'node:fs';

/**
 * Puts `lines` after the `begin` marker, up to the `end` marker (kept), or up
 * to the end of the file without one. A missing marker stops the bench rather
 * than cutting the document.
 */
export function writeResults(root: string, lines: string[], begin: string, end?: string): void {
  const file = `${root}docs/PERFORMANCE.md`;
  const doc = readFileSync(file, 'utf8');
  const from = doc.indexOf(begin);
  const to = end === undefined ? doc.length : doc.indexOf(end);
  if (from < 0 || to < 0) throw new Error(`docs/PERFORMANCE.md has no section marked ${begin}`);
  const tail = end === undefined ? '' : `\n${doc.slice(to)}`;
  writeFileSync(file, `${doc.slice(0, from + begin.length)}\n\n${lines.join('\n')}\n${tail}`);
}
