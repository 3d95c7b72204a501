// `request_operation` on the proxy's metrics (opt-in by a Telemetry tagOverride): each request's
// operation from the shared OperationNamer (the route's name, a RouteTemplates template, or a
// learned template), with the namer's per-service budget, so the label never grows the series
// beyond it. Label objects with an operation are reused like the others (RequestLabelCache).
import { OperationNamer } from '../../telemetry/operations.ts';
import type { OperationTemplate } from '../../telemetry/operations.ts';
import { ISTIO_GENERATED_ROUTE_NAMES } from '../../envoy/access-log.ts';
import type { LabelValues } from './metrics.ts';
import type { MetricLabel } from './stats-config.ts';

export class RequestOperations {
  private readonly namer: OperationNamer;
  private templates: readonly OperationTemplate[] = [];
  private templatesKey = '[]';
  /** Per label object, its variants by operation (at most the namer's budget + 1 per service). */
  private readonly variants = new WeakMap<LabelValues, Map<string, LabelValues>>();

  constructor(namer = new OperationNamer()) {
    this.namer = namer;
  }

  /** `labels` with `request_operation` set to the operation of this request. */
  label(labels: LabelValues, templates: readonly OperationTemplate[] | undefined, method: string, path: string, routeName: string | undefined): LabelValues {
    const t = templates ?? [];
    if (t !== this.templates) {
      // the pilot sends one list to every listener: compared by content only when it is a new object
      const key = JSON.stringify(t);
      if (key !== this.templatesKey) {
        this.namer.setTemplates(t);
        this.templatesKey = key;
      }
      this.templates = t;
    }
    const operation = this.namer.name({
      service: labels.destination_service,
      path,
      method,
      ...(routeName !== undefined && !ISTIO_GENERATED_ROUTE_NAMES.has(routeName) ? { routeName } : {}),
    });
    let byOp = this.variants.get(labels);
    if (byOp === undefined) this.variants.set(labels, (byOp = new Map()));
    let out = byOp.get(operation);
    if (out === undefined) {
      out = { ...labels, request_operation: operation } as Record<MetricLabel, string>;
      byOp.set(operation, out);
    }
    return out;
  }

  /** Services, operations and learned-tree nodes held (the memory bound). */
  size(): { services: number; operations: number; nodes: number } {
    return this.namer.size();
  }
}
