/**
 * Text tags of a movie: iTunes-style moov/udta/meta/ilst items ('©nam' → data) and QuickTime
 * udta text entries ('©nam' → size, language, text).
 */
import { childBoxes, findChild, payload, type BoxHeader } from './boxes.js';

const NAMES: Record<string, string> = {
  '©nam': 'title', '©ART': 'artist', aART: 'album_artist', '©alb': 'album', '©day': 'date', '©too': 'encoder',
  '©cmt': 'comment', '©gen': 'genre', '©wrt': 'composer', cprt: 'copyright', desc: 'description', ldes: 'long_description',
};
const MAX_TAGS = 64;
const MAX_TAG_CHARS = 1024;

function tagName(type: string): string {
  return NAMES[type] ?? type.replace(/[^\x21-\x7e]/g, '_');
}

export function readTags(moov: Buffer, moovBox: BoxHeader): Record<string, string> {
  const tags: Record<string, string> = {};
  const add = (type: string, value: string): void => {
    if (Object.keys(tags).length < MAX_TAGS) tags[tagName(type)] = value.slice(0, MAX_TAG_CHARS);
  };
  const udta = findChild(moov, moovBox, 'udta');
  if (!udta) return tags;
  for (const entry of childBoxes(moov, udta.offset + udta.headerSize, udta.offset + udta.size)) {
    if (entry.type === 'meta') {
      // ISO meta is a full box (4 bytes of version and flags before its children); QuickTime's is not.
      const full = payload(moov, entry).toString('latin1', 4, 8) !== 'hdlr';
      const ilst = findChild(moov, entry, 'ilst', full ? 4 : 0);
      for (const item of ilst ? childBoxes(moov, ilst.offset + ilst.headerSize, ilst.offset + ilst.size) : []) {
        const data = findChild(moov, item, 'data');
        const p = data && payload(moov, data);
        if (p && p.length >= 8 && p.readUInt32BE(0) === 1) add(item.type, p.toString('utf8', 8)); // type 1: UTF-8 text
      }
    } else if (entry.type.startsWith('©')) {
      const p = payload(moov, entry);
      if (p.length >= 4) add(entry.type, p.toString('utf8', 4, Math.min(p.length, 4 + p.readUInt16BE(0))));
    }
  }
  return tags;
}
