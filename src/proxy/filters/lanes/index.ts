// The lanes room: `sextant.filters.http.lanes`, compiled from listener config (compileLanes) and
// run by the router before route selection (decodeOutbound / decodeInbound) and on the response
// (encodeLane); LaneState is the proxy's trace table and lane counters, shared by its listeners.
export {
  LANES_TYPE, LANE_HEADER, SERVED_LANE_HEADER, LANE_REASON_HEADER, REQUESTED_LANE_HEADER, LANE_MISS_HEADER,
  LaneState, compileLanes, decodeInbound, decodeOutbound, encodeLane, laneRequest, markMeshPeer, trustedCaller,
} from './lanes.ts';
export type { LaneDecision, LaneFilter, LaneReason, LaneRuntime } from './lanes.ts';
export { TraceTable } from './trace-table.ts';
export type { LaneContext } from './trace-table.ts';
export { carrierLane, traceKeys, writeCarriers, stripCarriers, CARRIER_KEY } from './propagation.ts';
