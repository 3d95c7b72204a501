// A message body as de-framed bytes: an AsyncIterable<Buffer> fed by a connection, with
// backpressure (the connection stops reading while too much is queued) and one reader.
import type { RawHeader } from './headers.ts';

/** Callbacks a connection gives a body it feeds. */
export interface BodySource {
  /** The reader has drained the queue below the high-water mark: read from the socket again. */
  resume(): void;
  /** The reader stopped early (break/return): the rest of the body is unwanted. */
  abandon(): void;
  /** The first read: e.g. when a server sends "100 Continue". */
  firstRead?(): void;
}

const DONE: IteratorResult<Buffer> = Object.freeze({ done: true, value: undefined });

/**
 * De-framed body bytes, read once with `for await`. `trailers` holds the chunked trailers
 * once the iteration has ended (null when there were none).
 */
export class BodyStream implements AsyncIterable<Buffer>, AsyncIterator<Buffer> {
  private queue: Buffer[] = [];
  private qhead = 0;
  private queued = 0;
  private ended = false;
  private error: Error | null = null;
  private waiting: { resolve: (r: IteratorResult<Buffer>) => void; reject: (e: Error) => void } | null = null;
  private taken = false;
  private abandoned = false;
  private source: BodySource | null;
  private readonly highWaterMark: number;
  private firstReadDone = false;
  trailers: RawHeader[] | null = null;

  constructor(source: BodySource | null, highWaterMark: number) {
    this.source = source;
    this.highWaterMark = highWaterMark;
  }

  /** Bytes queued and not read yet. */
  get bufferedBytes(): number {
    return this.queued;
  }

  /** The body ended normally or with an error (nothing more will be pushed). */
  get finished(): boolean {
    return this.ended || this.error !== null;
  }

  /** Ended normally with nothing queued and nothing read: a body with no bytes. */
  get isEmptyAndEnded(): boolean {
    return this.ended && this.queue.length === this.qhead && !this.taken;
  }

  /** True when the reader stopped early. */
  get isAbandoned(): boolean {
    return this.abandoned;
  }

  /** Feeds bytes; returns false when the queue is over the high-water mark (pause the socket). */
  push(b: Buffer): boolean {
    if (this.ended || this.error !== null || this.abandoned) return true;
    const w = this.waiting;
    if (w !== null) {
      this.waiting = null;
      w.resolve({ done: false, value: b });
      return true;
    }
    this.queue.push(b);
    this.queued += b.length;
    return this.queued < this.highWaterMark;
  }

  /** Marks the normal end of the body. */
  end(trailers: RawHeader[] | null = null): void {
    if (this.ended || this.error !== null) return;
    this.ended = true;
    this.trailers = trailers;
    this.source = null;
    const w = this.waiting;
    if (w !== null) {
      this.waiting = null;
      w.resolve(DONE);
    }
  }

  /** Ends the body with an error: the reader's next read throws it. */
  fail(err: Error): void {
    if (this.ended || this.error !== null) return;
    this.error = err;
    this.source = null;
    const w = this.waiting;
    if (w !== null) {
      this.waiting = null;
      w.reject(err);
    }
  }

  /**
   * Takes the next chunk without waiting: a Buffer when one is queued, null when the body
   * has ended, undefined when the next bytes have not arrived yet. Throws the body's error.
   * Lets a writer send a head and the bytes already here in one write.
   */
  tryRead(): Buffer | null | undefined {
    this.taken = true;
    if (!this.firstReadDone) {
      this.firstReadDone = true;
      this.source?.firstRead?.();
    }
    if (this.qhead < this.queue.length) {
      const b = this.queue[this.qhead]!;
      this.queue[this.qhead++] = EMPTY;
      const wasOver = this.queued >= this.highWaterMark;
      this.queued -= b.length;
      if (this.qhead === this.queue.length) {
        this.queue.length = 0;
        this.qhead = 0;
      }
      if (wasOver && this.queued < this.highWaterMark) this.source?.resume();
      return b;
    }
    if (this.error !== null) throw this.error;
    if (this.ended || this.abandoned) return null;
    return undefined;
  }

  [Symbol.asyncIterator](): AsyncIterator<Buffer> {
    if (this.taken) throw new Error('body is read once and is already being read');
    this.taken = true;
    return this;
  }

  next(): Promise<IteratorResult<Buffer>> {
    let b: Buffer | null | undefined;
    try {
      b = this.tryRead();
    } catch (e) {
      return Promise.reject(e as Error);
    }
    if (b === null) return Promise.resolve(DONE);
    if (b !== undefined) return Promise.resolve({ done: false, value: b });
    return new Promise((resolve, reject) => {
      this.waiting = { resolve, reject };
    });
  }

  return(): Promise<IteratorResult<Buffer>> {
    this.abandon();
    return Promise.resolve(DONE);
  }

  /** Drops queued bytes and tells the source the rest is unwanted. */
  abandon(): void {
    if (this.abandoned) return;
    this.abandoned = true;
    this.queue.length = 0;
    this.qhead = 0;
    this.queued = 0;
    if (!this.ended && this.error === null) {
      const s = this.source;
      this.source = null;
      s?.abandon();
    }
  }
}

const EMPTY = Buffer.alloc(0);

/** A body with no bytes. */
export function emptyBody(): BodyStream {
  const b = new BodyStream(null, 1);
  b.end();
  return b;
}
