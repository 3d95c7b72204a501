// Sextant's RouteTemplates kind (sextant.io/v1alpha1): the operations of one service, as path
// templates (`/orders/{id}`), so that `request_operation` (metrics) and the access-log store
// name a request by what it does rather than by its raw path. The spec type, its structural
// schema and its semantic rules; the pilot delivers the templates to the sidecars (in the
// stats filter config) and to its access-log sink.
import { checkFQDN } from './checks.ts';
import { arr, obj, str, strs, type ObjectSchema } from './schema.ts';
import type { ResourceName } from './semantic.ts';
import type { Issues } from './schema.ts';
import { OperationTemplateError, compileOperationTemplate } from '../telemetry/operations.ts';

export const ROUTE_TEMPLATES_GROUP = 'sextant.io';
export const ROUTE_TEMPLATES_VERSION = 'v1alpha1';
export const ROUTE_TEMPLATES_API_VERSION = `${ROUTE_TEMPLATES_GROUP}/${ROUTE_TEMPLATES_VERSION}`;

/** Templates per RouteTemplates resource at most: each is matched per request in order. */
export const MAX_ROUTE_TEMPLATES = 200;

export interface RouteTemplate {
  /**
   * `/`-separated segments: a literal, `{name}` (or `:name`, `*`) for one segment, and as the
   * last segment `{name...}` (or `**`) for any number of segments.
   */
  template: string;
  /** The operation's name; default the template itself. */
  name?: string;
  /** Methods it applies to; default every method. */
  methods?: string[];
}

export interface RouteTemplatesSpec {
  /** The service (a ServiceEntry host; a short name resolves in the resource's namespace). */
  host: string;
  /** Tried in order; the first match names the operation. */
  templates: RouteTemplate[];
}

const METHOD = /^[A-Z]{1,20}$/;

/** The structural schema of RouteTemplates' spec. */
export const routeTemplatesSchema: ObjectSchema = obj({
  host: str({ minLength: 1, maxLength: 253 }),
  templates: arr(obj({
    template: str({ minLength: 1, maxLength: 1024 }),
    name: str({ minLength: 1, maxLength: 256 }),
    methods: strs({ maxItems: 16 }, str({ minLength: 1, maxLength: 20 })),
  }, { required: ['template'] }), { maxItems: MAX_ROUTE_TEMPLATES }),
}, { required: ['host', 'templates'] });

/** The rules across fields: a host without wildcards, templates that compile, no template twice, upper-case methods. */
export function checkRouteTemplates(spec: RouteTemplatesSpec, _id: ResourceName, issues: Issues): void {
  if (spec.host.includes('*')) issues.add('spec.host', `Invalid value: ${JSON.stringify(spec.host)}: route templates name one service, not a wildcard`);
  else {
    const e = checkFQDN(spec.host);
    if (e !== undefined) issues.add('spec.host', e);
  }
  if (spec.templates.length === 0) issues.add('spec.templates', 'Required value: at least one template');
  const seen = new Map<string, number>();
  spec.templates.forEach((t, i) => {
    const at = `spec.templates[${i}]`;
    try {
      compileOperationTemplate({ template: t.template, ...(t.name !== undefined ? { name: t.name } : {}) });
    } catch (err) {
      if (!(err instanceof OperationTemplateError)) throw err;
      issues.add(`${at}.template`, `Invalid value: ${err.message}`);
      return;
    }
    const methods = t.methods ?? [];
    methods.forEach((m, j) => {
      if (!METHOD.test(m)) issues.add(`${at}.methods[${j}]`, `Invalid value: ${JSON.stringify(m)}: an HTTP method in upper case (GET, POST, …)`);
    });
    const key = `${[...methods].sort().join(',')} ${t.template}`;
    const first = seen.get(key);
    if (first !== undefined) issues.add(`${at}.template`, `Duplicate value: ${JSON.stringify(t.template)} is spec.templates[${first}] already (it would never match)`);
    else seen.set(key, i);
  });
}
