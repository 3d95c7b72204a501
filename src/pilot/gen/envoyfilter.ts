// EnvoyFilter patches applied to generated resources.
import type { ProtoJson, XdsTypeUrl } from '../../envoy/index.ts';
import type { Proxy } from '../model.ts';
import type { SextantPushContext } from '../push/context.ts';

export function applyEnvoyFilters(_push: SextantPushContext, _proxy: Proxy, _typeUrl: XdsTypeUrl, resources: ProtoJson[]): ProtoJson[] {
  return resources;
}
