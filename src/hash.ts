import { createHash, hash, type Hash } from 'node:crypto';

// node:crypto uses the CPU's SHA extensions: ~940 MB/s here against ~72 MB/s for @noble/hashes.
// crypto.hash: the one-shot form, ~0.5 µs less per call than a Hash object (16,000 atoms per GiB).
export function sha256Hex(data: Uint8Array): string {
  return hash('sha256', data, 'hex');
}

/** The SHA-256 of `data` as 32 bytes (compared with a name stored as bytes: no hex made). */
export function sha256Digest(data: Uint8Array): Buffer {
  return hash('sha256', data, 'buffer') as unknown as Buffer;
}

export function newSha256(): Hash {
  return createHash('sha256');
}
