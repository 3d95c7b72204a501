// A request body that can be sent again: the bytes read so far are kept up to a bound, so
// a request that died on a stale keep-alive connection (or that the router retries) can
// be replayed on another connection while the rest still streams from its source.
import { BodyStream } from '../http/body.ts';
import type { RawHeader } from '../http/headers.ts';
import type { QueuedBody } from '../http/serialize.ts';

/** One read of a ReplayableBody from its start. */
export interface BodyCursor extends AsyncIterator<Buffer>, QueuedBody {
  next(): Promise<IteratorResult<Buffer>>;
}

const DONE: IteratorResult<Buffer> = Object.freeze({ done: true, value: undefined });

export class ReplayableBody {
  /** Bytes of the body when known in advance (a Buffer or no body), else -1. */
  readonly knownLength: number;
  private readonly limit: number;
  private source: AsyncIterator<Buffer> | null;
  private chunks: Buffer[] = [];
  private count = 0;
  private recordedBytes = 0;
  private last: Buffer | null = null;
  private overflow = false;
  private ended = false;
  private error: unknown = null;
  private pulling: Promise<void> | null = null;
  private cursors = 0;
  private readonly origin: AsyncIterable<Buffer> | null;

  /**
   * `limit` bounds the bytes kept for replay; past it the body still streams once but
   * can no longer be replayed.
   */
  constructor(body: AsyncIterable<Buffer> | Buffer | null, limit: number) {
    this.limit = limit;
    this.origin = body === null || Buffer.isBuffer(body) ? null : body;
    if (body === null || (body instanceof BodyStream && body.isEmptyAndEnded)) {
      // no body, or a downstream request's empty one: nothing to frame
      this.source = null;
      this.ended = true;
      this.knownLength = 0;
    } else if (Buffer.isBuffer(body)) {
      this.source = null;
      this.ended = true;
      this.knownLength = body.length;
      if (body.length > 0) {
        this.chunks.push(body);
        this.count = 1;
        this.recordedBytes = body.length;
      }
    } else {
      this.source = body[Symbol.asyncIterator]();
      this.knownLength = -1;
    }
  }

  /** Every byte read so far is kept: a new cursor can start over. */
  get replayable(): boolean {
    return !this.overflow && this.error === null;
  }

  /** A new attempt can start from the first byte (nothing read yet, or all of it kept). */
  get canReplay(): boolean {
    return this.cursors === 0 || this.replayable;
  }

  /** The source is fully read. */
  get complete(): boolean {
    return this.ended;
  }

  /** Chunked trailers of the source, when it is a BodyStream that carried some. */
  get trailers(): RawHeader[] | null {
    return this.origin instanceof BodyStream ? this.origin.trailers : null;
  }

  /** Bytes read from the source so far. */
  get bytesRead(): number {
    return this.recordedBytes;
  }

  /** A reader from the first byte. Throws when the body is no longer replayable. */
  cursor(): BodyCursor {
    if (this.cursors > 0 && !this.replayable) throw new Error('request body exceeded the retry buffer and cannot be replayed');
    this.cursors++;
    let seq = 0;
    const next = async (): Promise<IteratorResult<Buffer>> => {
      for (;;) {
        if (seq < this.count) {
          if (!this.overflow) return { done: false, value: this.chunks[seq++]! };
          if (seq === this.count - 1 && this.last !== null) {
            seq++;
            return { done: false, value: this.last };
          }
          throw new Error('request body exceeded the retry buffer and cannot be replayed');
        }
        if (this.error !== null) throw this.error;
        if (this.ended) return DONE;
        await this.pull();
      }
    };
    const tryRead = (): Buffer | null | undefined => {
      if (seq < this.count) {
        if (!this.overflow) return this.chunks[seq++]!;
        if (seq === this.count - 1 && this.last !== null) {
          seq++;
          return this.last;
        }
        throw new Error('request body exceeded the retry buffer and cannot be replayed');
      }
      if (this.error !== null) throw this.error;
      if (this.ended) return null;
      if (this.pulling !== null || !(this.origin instanceof BodyStream)) return undefined;
      const b = this.origin.tryRead();
      if (b === undefined) return undefined;
      if (b === null) {
        this.ended = true;
        this.source = null;
        return null;
      }
      this.record(b);
      seq++;
      return b;
    };
    return { next, tryRead };
  }

  private record(b: Buffer): void {
    this.count++;
    this.recordedBytes += b.length;
    if (!this.overflow) {
      if (this.recordedBytes > this.limit) {
        this.overflow = true;
        this.chunks = [];
      } else this.chunks.push(b);
    }
    this.last = b;
  }

  private pull(): Promise<void> {
    if (this.pulling !== null) return this.pulling;
    const src = this.source!;
    this.pulling = src.next().then(
      (r) => {
        this.pulling = null;
        if (r.done === true) {
          this.ended = true;
          this.source = null;
          return;
        }
        this.record(r.value);
      },
      (e: unknown) => {
        this.pulling = null;
        this.error = e ?? new Error('request body failed');
      },
    );
    return this.pulling;
  }
}
