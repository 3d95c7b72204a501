// The registration API's one error type: an HTTP status and the JSON body `{error, field?}`
// a caller can act on (the field is named as the request names it).

export class ApiError extends Error {
  override name = 'ApiError';
  readonly status: number;
  /** The request field at fault (`ports[0].number`, `labels.app`), when there is one. */
  readonly field: string | undefined;
  /** Further lines (every validation error of a resource), when there are several. */
  readonly details: readonly string[] | undefined;
  /** Extra response headers (Allow, WWW-Authenticate). */
  readonly headers: Readonly<Record<string, string>>;

  constructor(status: number, message: string, options: { field?: string | undefined; details?: readonly string[]; headers?: Record<string, string> } = {}) {
    super(message);
    this.status = status;
    this.field = options.field;
    this.details = options.details;
    this.headers = options.headers ?? {};
  }

  body(): { error: string; field?: string; details?: readonly string[] } {
    const out: { error: string; field?: string; details?: readonly string[] } = { error: this.message };
    if (this.field !== undefined) out.field = this.field;
    if (this.details !== undefined && this.details.length > 1) out.details = this.details;
    return out;
  }
}

export const badRequest = (message: string, field?: string): ApiError => new ApiError(400, message, { field });
export const notFound = (message: string): ApiError => new ApiError(404, message);
