// ConfigError: one problem in one config document, naming the file, the document's
// index, the resource (Kind/namespace/name) and the field path, like istioctl does.

export interface ConfigErrorInit {
  file?: string;
  index?: number;
  /** Kind/namespace/name; empty when the document has no usable kind or name. */
  resource: string;
  /** Field path in the document, e.g. spec.http[0].route[1].weight; empty for the whole document. */
  path: string;
  /** What is wrong and what is expected. */
  detail: string;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
  file?: string;
  index?: number;
  resource: string;
  path: string;
  detail: string;

  constructor(init: ConfigErrorInit) {
    super(formatConfigError(init));
    if (init.file !== undefined) this.file = init.file;
    if (init.index !== undefined) this.index = init.index;
    this.resource = init.resource;
    this.path = init.path;
    this.detail = init.detail;
  }

  /** One line: "file:index Kind/ns/name: spec.x.y: what is expected". */
  override toString(): string {
    return this.message;
  }
}

function formatConfigError(e: ConfigErrorInit): string {
  let where = '';
  if (e.file !== undefined) where = e.index !== undefined ? `${e.file}:${e.index}` : e.file;
  const parts: string[] = [];
  if (where !== '' && e.resource !== '') parts.push(`${where} ${e.resource}`);
  else if (where !== '') parts.push(where);
  else if (e.resource !== '') parts.push(e.resource);
  if (e.path !== '') parts.push(e.path);
  parts.push(e.detail);
  // One error per line, always: a multi-line detail (e.g. a YAML excerpt) is folded.
  return parts.join(': ').replace(/\s*\n\s*/g, ' ');
}
