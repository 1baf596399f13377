/**
 * Git's pkt-line framing (Documentation/technical/protocol-common.txt): four hex digits of length
 * (including themselves) then the payload; "0000" is a flush packet. Payloads are at most 65516
 * bytes. Synchronous on file descriptors: the filter process serves one request at a time.
 */
import { PaniniError } from '../errors.js';
import { readFd, readFdPolling, writeFdAllv, writeFdAllvWorking, type IdleWork } from '../io.js';

export const MAX_PAYLOAD = 65516;
const FLUSH = Buffer.from('0000');

const READ_BUFFER = 256 * 1024;

export class PktReader {
  // Bytes [start, end) of buf are received but not yet consumed. Payloads handed out by read() are
  // views into buf, so once one is out a full buffer is replaced rather than reused (its views stay
  // valid for their holders); after only transient reads it is compacted in place instead, which
  // spares a gigabyte of fresh memory (and its page faults) per gigabyte of content.
  private buf = Buffer.allocUnsafe(READ_BUFFER);
  private start = 0;
  private end = 0;
  private shared = false;
  /** readContentInto: bytes of the current packet's payload still to come; a flush read ahead. */
  private payloadLeft = 0;
  private flushPending = false;
  /**
   * `nonBlockingFd`: a non-blocking descriptor of the same pipe (nonBlockingPipe), polled for up to
   * `pollMs` (readFdPolling) while waiting for the next request; -1 to always block. Within a
   * request the rest follows at once, and content streams: those reads block.
   */
  constructor(private readonly fd: number, private readonly nonBlockingFd = -1, private readonly pollMs = 0) {}

  /** Done while waiting for the next request, once Git has sent nothing for a while (readFdPolling). */
  idle: IdleWork | undefined;
  /** Done once, while waiting for the next request if it has not come yet (readFdPolling); only when polling. */
  ahead: (() => void) | null = null;

  /** Next packet's payload, null for a flush packet, undefined at end of input. */
  read(): Buffer | null | undefined {
    const payload = this.readTransient();
    if (payload) this.shared = true;
    return payload;
  }

  /** Same, but the payload is valid only until the next read: the caller copies what it keeps. */
  readTransient(): Buffer | null | undefined {
    const len = this.readHeader();
    if (len === undefined) return undefined;
    if (len === 0) return null;
    const payload = this.take(len - 4);
    if (payload === undefined) throw new PaniniError('input ended inside a pkt-line');
    return payload;
  }

  /**
   * Copies the payloads of the content being received, up to its flush packet, into `into` at
   * `at`: at most `max` bytes, 0 once the flush is reached (which it consumes). Use it from a packet
   * boundary (after read or readTransient) to the flush. What is not buffered yet is read straight
   * into `into`, with the next packet's header when there is room: one copy of the content, and
   * about one read per packet.
   */
  readContentInto(into: Buffer, at: number, max: number): number {
    let done = 0;
    while (done < max) {
      if (this.payloadLeft === 0) {
        const len = this.readHeader();
        if (len === undefined) throw new PaniniError('Git closed the filter pipe inside content');
        if (len === 0) {
          if (done === 0) return 0;
          this.flushPending = true; // reported by the next call
          break;
        }
        this.payloadLeft = len - 4;
      }
      const want = Math.min(this.payloadLeft, max - done);
      const buffered = Math.min(want, this.end - this.start);
      if (buffered > 0) {
        this.buf.copy(into, at + done, this.start, this.start + buffered);
        this.start += buffered;
        done += buffered;
        this.payloadLeft -= buffered;
        continue;
      }
      // Nothing buffered: the rest of this payload, and the next header if it fits, straight in.
      const ask = this.payloadLeft < max - done ? Math.min(max - done, this.payloadLeft + 4) : want;
      const got = readFd(this.fd, into, at + done, ask);
      if (got === 0) throw new PaniniError('input ended inside a pkt-line');
      const payload = Math.min(got, this.payloadLeft);
      if (got > payload) {
        // Bytes of the next header: they go to the (empty) buffer, where readHeader finds them.
        into.copy(this.buf, 0, at + done + payload, at + done + got);
        this.start = 0;
        this.end = got - payload;
      }
      done += payload;
      this.payloadLeft -= payload;
    }
    return done;
  }

  /** A text packet without its trailing newline; null on flush. */
  readText(): string | null {
    const p = this.read();
    if (p === undefined) throw new PaniniError('Git closed the filter pipe unexpectedly');
    return p === null ? null : p.toString('utf8').replace(/\n$/, '');
  }

  /** key=value lines up to the next flush. */
  readKeyValues(): Map<string, string> | undefined {
    let len = this.readHeader(true);
    if (len === undefined) return undefined;
    const map = new Map<string, string>();
    // Parsed where the packets lie in the buffer (a request is read per file: no views made).
    for (; len !== 0; len = this.readHeader()) {
      if (len === undefined) throw new PaniniError('Git closed the filter pipe inside a request');
      if (!this.fill(len - 4)) throw new PaniniError('input ended inside a pkt-line');
      const { buf, start } = this;
      const end = start + len - 4;
      this.start = end;
      const last = buf[end - 1] === 0x0a ? end - 1 : end;
      let eq = start;
      while (eq < last && buf[eq] !== 0x3d) eq++; // '=': a byte no other UTF-8 character contains
      if (eq > start && eq < last) map.set(buf.toString('utf8', start, eq), buf.toString('utf8', eq + 1, last));
    }
    return map;
  }

  /** The next packet's length (0: flush), undefined at end of input. */
  private readHeader(poll = false): number | undefined {
    if (this.flushPending) {
      this.flushPending = false;
      return 0;
    }
    if (!this.fill(4, poll)) return undefined;
    const len = parseHexLength(this.buf, this.start);
    if (len < 0 || (len > 0 && len < 4) || len > MAX_PAYLOAD + 4) {
      throw new PaniniError(`bad pkt-line header ${JSON.stringify(this.buf.toString('latin1', this.start, this.start + 4))}`, 'git-panini filter-process must be started by Git (filter.panini.process)');
    }
    this.start += 4;
    return len;
  }

  private take(n: number): Buffer | undefined {
    if (!this.fill(n)) return undefined;
    const out = this.buf.subarray(this.start, this.start + n);
    this.start += n;
    return out;
  }

  /** Reads until `n` bytes are buffered (polling first if `poll`: see the constructor); false if the input ended before any of them. */
  private fill(n: number, poll = false): boolean {
    while (this.end - this.start < n) {
      if (this.buf.length - this.start < n || this.end === this.buf.length) {
        if (this.shared || this.buf.length < n) {
          const next = Buffer.allocUnsafe(Math.max(READ_BUFFER, n));
          this.buf.copy(next, 0, this.start, this.end);
          this.buf = next;
          this.shared = false;
        } else {
          this.buf.copyWithin(0, this.start, this.end);
        }
        this.end -= this.start;
        this.start = 0;
      }
      let ahead: (() => void) | undefined;
      if (poll && this.pollMs > 0 && this.ahead) {
        ahead = this.ahead;
        this.ahead = null;
      }
      const got = poll && this.nonBlockingFd >= 0
        ? readFdPolling(this.fd, this.nonBlockingFd, this.pollMs, this.buf, this.end, this.buf.length - this.end, this.idle, ahead)
        : readFd(this.fd, this.buf, this.end, this.buf.length - this.end);
      if (got === 0) {
        if (this.end === this.start) return false;
        throw new PaniniError('input ended inside a pkt-line');
      }
      this.end += got;
    }
    return true;
  }
}

/** The value of the four hex digits at buf[at], or -1 if they are not. */
function parseHexLength(buf: Buffer, at: number): number {
  let len = 0;
  for (let i = at; i < at + 4; i++) {
    const c = buf[i]!;
    const digit = c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : c >= 65 && c <= 70 ? c - 55 : -1;
    if (digit < 0) return -1;
    len = len * 16 + digit;
  }
  return len;
}

/** The four hex digits that start a packet of `payloadBytes`. */
function pktHeader(payloadBytes: number): string {
  return (payloadBytes + 4).toString(16).padStart(4, '0');
}

/**
 * Buffers small packets and writes them in large syscalls. Content fills packets to the maximum
 * size whatever the pieces it comes in (a media file's atoms are often a few hundred bytes): Git
 * reads each packet with two system calls, so one per atom would cost it more than the bytes.
 */
export class PktWriter {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** The content packet being filled: its header, written once its length is known, and that length so far. */
  private open: { header: Buffer; length: number } | null = null;
  /**
   * Work to do while sending, a step per call (false: none left), between writes of a pipe's worth
   * and while the pipe is full, instead of waiting in the kernel: Git reads on the other core
   * meanwhile. Needs `nonBlockingFd`, a non-blocking descriptor of the same pipe (nonBlockingPipe).
   */
  whileBlocked: (() => boolean) | null = null;

  constructor(private readonly fd: number, private readonly nonBlockingFd = -1) {}

  text(line: string): void {
    const payload = Buffer.from(line + '\n');
    this.closePacket();
    this.queue(Buffer.from(pktHeader(payload.length), 'latin1'));
    this.queue(payload);
    this.sendIfLarge();
  }

  flushPkt(): void {
    this.closePacket();
    this.queue(FLUSH);
    this.sendIfLarge();
  }

  /**
   * Content, in packets of the maximum size. The bytes are not copied: they must stay as they are
   * until send() (which data() calls itself once a MiB of whole packets is pending) returns.
   */
  data(bytes: Uint8Array): void {
    for (let at = 0; at < bytes.length; ) {
      const open = (this.open ??= this.openPacket());
      const take = Math.min(bytes.length - at, MAX_PAYLOAD - open.length);
      this.queue(Buffer.from(bytes.buffer, bytes.byteOffset + at, take));
      open.length += take;
      at += take;
      if (open.length === MAX_PAYLOAD) {
        this.closePacket();
        this.sendIfLarge(); // between packets: sending closes the one being filled
      }
    }
  }

  /** Sends everything queued to Git. */
  send(): void {
    this.closePacket();
    if (this.pendingBytes === 0) return;
    const work = this.whileBlocked;
    if (work && this.nonBlockingFd >= 0) writeFdAllvWorking(this.nonBlockingFd, this.fd, this.pending, work);
    else writeFdAllv(this.fd, this.pending);
    this.pending = [];
    this.pendingBytes = 0;
  }

  private openPacket(): { header: Buffer; length: number } {
    const header = Buffer.allocUnsafe(4);
    this.queue(header);
    return { header, length: 0 };
  }

  private closePacket(): void {
    if (!this.open) return;
    this.open.header.write(pktHeader(this.open.length), 'latin1');
    this.open = null;
  }

  /** Queues bytes; a piece that continues the last one in memory extends it (one iovec, not two). */
  private queue(b: Buffer): void {
    const last = this.pending[this.pending.length - 1];
    if (last && last.buffer === b.buffer && last.byteOffset + last.length === b.byteOffset) {
      this.pending[this.pending.length - 1] = Buffer.from(last.buffer, last.byteOffset, last.length + b.length);
    } else {
      this.pending.push(b);
    }
    this.pendingBytes += b.length;
  }

  private sendIfLarge(): void {
    if (this.pendingBytes >= 1024 * 1024) this.send();
  }
}
