// The sidecar's DNS proxy: mesh hosts answered from the NDS name table, the rest forwarded.
export { DnsProxy, parseResolvConf } from './dns-proxy.ts';
export type { DnsProxyOptions, DnsStats, Upstream } from './dns-proxy.ts';
export { NameTable } from './name-table.ts';
export type { NameAddresses } from './name-table.ts';
