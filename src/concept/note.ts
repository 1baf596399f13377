/**
 * Knowledge notes: hand-written Markdown concepts that reference content (the seed's add-content).
 * Attaching a file merges git-panini's keys into the note's front matter; the author's keys and
 * body are kept.
 */
import { PaniniError } from '../errors.js';
import { OWN_KEYS, parseFrontMatter, yaml } from './concept.js';

/** The front matter lines of a concept we rendered (between its fences). */
function ownFrontMatter(conceptText: string): string {
  const end = conceptText.indexOf('\n---\n', 3);
  return conceptText.slice(4, end + 1);
}

export function attachContent(noteText: string, conceptText: string): string {
  const bad = (why: string): PaniniError => new PaniniError(`cannot attach content to this note: ${why}`, 'fix the note\'s front matter (YAML between --- lines) and try again');
  const parsed = parseFrontMatter(noteText, bad) ?? { data: {}, body: noteText };
  const authorKeys: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(parsed.data)) if (!OWN_KEYS.has(k)) authorKeys[k] = v;
  const authorYaml = Object.keys(authorKeys).length > 0 ? yaml().safeDump(authorKeys, { lineWidth: -1, noRefs: true }) : '';
  const body = parsed.body.startsWith('\n') ? parsed.body.slice(1) : parsed.body;
  return `---\n${authorYaml}${ownFrontMatter(conceptText)}---\n${body}`;
}
