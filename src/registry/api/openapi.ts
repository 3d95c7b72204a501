// The registration API's OpenAPI 3.1 document, served at /apis/registration/v1/openapi.json.
// Request schemas come from schema.ts, the same shapes every request is checked against.
import { INSTANCE_BODY, RELEASE_BODY, SERVICE_BODY, toOpenApi } from './schema.ts';

export const API_PREFIX = '/apis/registration/v1';

const ref = (name: string): Record<string, string> => ({ $ref: `#/components/schemas/${name}` });

const json = (schema: Record<string, unknown>): Record<string, unknown> => ({ content: { 'application/json': { schema } } });

const errorResponse = (description: string): Record<string, unknown> => ({ description, ...json(ref('Error')) });

const ERRORS: Record<string, unknown> = {
  400: errorResponse('invalid path parameter or body; `field` names the field'),
  401: errorResponse('no token, or an unknown one'),
  403: errorResponse('the token may not act on this namespace'),
  404: errorResponse('no such service, instance or release (or it is not managed by this API)'),
  503: errorResponse('the config store cannot be reached'),
};

const WRITE_ERRORS: Record<string, unknown> = {
  ...ERRORS,
  409: errorResponse('a resource of that name exists and is not managed by the registration API, or the resources kept changing'),
  412: errorResponse('If-Match names a resourceVersion that is not current'),
  413: errorResponse('the body is larger than 1 MiB'),
  415: errorResponse('the body is not application/json'),
};

const param = (name: string, description: string): Record<string, unknown> => ({
  name, in: 'path', required: true, description, schema: { type: 'string', pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$', maxLength: 63 },
});

const IF_MATCH = {
  name: 'If-Match', in: 'header', required: false,
  description: 'write only if the object is at this resourceVersion (quoted or not); 412 otherwise',
  schema: { type: 'string' },
};

const NS = param('namespace', 'the config namespace the resources live in');
const NAME = param('service', 'the service name');
const ID = param('id', 'the instance id (the WorkloadEntry is SERVICE-ID)');

function op(summary: string, responses: Record<string, unknown>, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { summary, security: [{ bearer: [] }], ...extra, responses };
}

function body(schema: string): Record<string, unknown> {
  return { requestBody: { required: true, ...json(ref(schema)) } };
}

function ok(description: string, schema: Record<string, unknown>, created = false): Record<string, unknown> {
  return created ? { 200: { description, ...json(schema) }, 201: { description: `${description} (created)`, ...json(schema) } } : { 200: { description, ...json(schema) } };
}

const list = (item: string): Record<string, unknown> => ({ type: 'object', properties: { items: { type: 'array', items: ref(item) } }, required: ['items'] });

export function openApiDocument(): Record<string, unknown> {
  const p = API_PREFIX;
  return {
    openapi: '3.1.0',
    info: {
      title: 'Sextant registration API',
      version: 'v1',
      description: 'Registers services and instances from a deployment platform and pulls instances in and out of traffic. '
        + 'Writes Istio resources (ServiceEntry, WorkloadEntry, DestinationRule, VirtualService) labelled sextant.io/managed-by=registration '
        + 'through the pilot\'s config store; every call is all-or-nothing and repeating it is harmless. See docs/registration.md.',
    },
    servers: [{ url: p }],
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'a token from the pilot\'s --registration-tokens file' } },
      schemas: {
        ServiceBody: toOpenApi(SERVICE_BODY),
        InstanceBody: toOpenApi(INSTANCE_BODY),
        ReleaseBody: toOpenApi(RELEASE_BODY),
        Service: {
          allOf: [ref('ServiceBody'), {
            type: 'object',
            properties: { namespace: { type: 'string' }, name: { type: 'string' }, resourceVersion: { type: 'string' }, serviceEntry: { type: 'string' } },
            required: ['namespace', 'name', 'resourceVersion', 'serviceEntry', 'hosts', 'location', 'resolution'],
          }],
        },
        Instance: {
          allOf: [ref('InstanceBody'), {
            type: 'object',
            properties: {
              namespace: { type: 'string' }, service: { type: 'string' }, id: { type: 'string' }, resourceVersion: { type: 'string' }, workloadEntry: { type: 'string' },
              acks: ref('Acks'),
            },
            required: ['namespace', 'service', 'id', 'state', 'resourceVersion', 'workloadEntry'],
          }],
        },
        Acks: {
          type: 'object',
          description: 'which proxies connected to this pilot hold the instance, and whether each has ACKed the EDS of its current state',
          properties: {
            state: { type: 'string', enum: ['in', 'out'] },
            resourceVersion: { type: 'string', description: 'the instance version these acks are about' },
            pushed: { type: 'boolean', description: 'the pilot serves a snapshot holding this version of the instance' },
            proxies: {
              type: 'array',
              items: {
                type: 'object',
                properties: {
                  proxy: { type: 'string' }, connection: { type: 'string' },
                  clusters: { type: 'array', items: { type: 'string' } },
                  acked: { type: 'boolean', description: 'the proxy ACKed the current assignment of every one of these clusters' },
                },
              },
            },
            acked: { type: 'integer' },
            pending: { type: 'integer' },
            complete: { type: 'boolean', description: 'pushed, and every proxy listed has acked' },
          },
        },
        Release: {
          allOf: [ref('ReleaseBody'), {
            type: 'object',
            properties: {
              namespace: { type: 'string' }, service: { type: 'string' }, host: { type: 'string' }, resourceVersion: { type: 'string' },
              destinationRule: { type: 'string' }, virtualService: { type: 'string' },
            },
          }],
        },
        Deleted: { type: 'object', properties: { deleted: { type: 'array', items: { type: 'string' } }, resourceVersion: { type: 'string' } }, required: ['deleted'] },
        Error: {
          type: 'object',
          properties: {
            error: { type: 'string', description: 'what is wrong and what is expected' },
            field: { type: 'string', description: 'the request field at fault, as the request names it (ports[0].number)' },
            details: { type: 'array', items: { type: 'string' }, description: 'every validation error, when there are several' },
          },
          required: ['error'],
        },
      },
    },
    paths: {
      [`/openapi.json`]: { get: { summary: 'this document (no token needed)', responses: { 200: { description: 'OpenAPI 3.1 document' } } } },
      [`/namespaces/{namespace}/services`]: {
        parameters: [NS],
        get: op('list the services registered in a namespace', { ...ok('services', list('Service')), ...ERRORS }),
      },
      [`/namespaces/{namespace}/services/{service}`]: {
        parameters: [NS, NAME],
        get: op('a service', { ...ok('the service', ref('Service')), ...ERRORS }),
        put: op('register or replace a service (its ServiceEntry)', { ...ok('the service as stored', ref('Service'), true), ...WRITE_ERRORS }, { parameters: [IF_MATCH], ...body('ServiceBody') }),
        delete: op('remove a service, its instances and its release, in one transaction', { ...ok('what was removed', ref('Deleted')), ...WRITE_ERRORS }, { parameters: [IF_MATCH] }),
      },
      [`/namespaces/{namespace}/services/{service}/instances`]: {
        parameters: [NS, NAME],
        get: op('list the instances of a service', { ...ok('instances', list('Instance')), ...ERRORS }),
      },
      [`/namespaces/{namespace}/services/{service}/instances/{id}`]: {
        parameters: [NS, NAME, ID],
        get: op('an instance, its traffic state and which proxies have ACKed it', { ...ok('the instance', ref('Instance')), ...ERRORS }),
        put: op('register or replace an instance (its WorkloadEntry); state defaults to in', { ...ok('the instance as stored', ref('Instance'), true), ...WRITE_ERRORS }, { parameters: [IF_MATCH], ...body('InstanceBody') }),
        delete: op('remove an instance', { ...ok('what was removed', ref('Deleted')), ...WRITE_ERRORS }, { parameters: [IF_MATCH] }),
      },
      [`/namespaces/{namespace}/services/{service}/instances/{id}:pull-out`]: {
        parameters: [NS, NAME, ID],
        post: op('take the instance out of every proxy\'s load balancing (EDS DRAINING); requests in flight finish', { ...ok('the instance', ref('Instance')), ...WRITE_ERRORS }, { parameters: [IF_MATCH] }),
      },
      [`/namespaces/{namespace}/services/{service}/instances/{id}:pull-in`]: {
        parameters: [NS, NAME, ID],
        post: op('put the instance back into load balancing', { ...ok('the instance', ref('Instance')), ...WRITE_ERRORS }, { parameters: [IF_MATCH] }),
      },
      [`/namespaces/{namespace}/services/{service}/release`]: {
        parameters: [NS, NAME],
        get: op('the release: subsets and weights', { ...ok('the release', ref('Release')), ...ERRORS }),
        put: op('set the subsets and their weights (a DestinationRule and a VirtualService, in one transaction)', { ...ok('the release as stored', ref('Release'), true), ...WRITE_ERRORS }, { parameters: [IF_MATCH], ...body('ReleaseBody') }),
        delete: op('remove the release', { ...ok('what was removed', ref('Deleted')), ...WRITE_ERRORS }, { parameters: [IF_MATCH] }),
      },
    },
  };
}
