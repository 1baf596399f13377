import { createHash, hash, type Hash } from 'node:crypto';

// node:crypto uses the CPU's SHA extensions: ~940 MB/s here against ~72 MB/s for @noble/hashes.
// crypto.hash: the one-shot form, ~0.5 µs less per call than a Hash object (16,000 atoms per GiB).
export function sha256Hex(data: Uint8Array): string {
  return hash('sha256', data, 'hex');
}

export function newSha256(): Hash {
  return createHash('sha256');
}
