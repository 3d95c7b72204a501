// Gateway proxies (`router~…` nodes) as istiod configures them from Istio's Gateway: the
// merged servers of the Gateways selecting the proxy (merge.ts), their listeners (HTTP, HTTPS
// and TLS by SNI, passthrough, TCP; listeners.ts), routes (routes.ts), TLS contexts (tls.ts),
// the SDS secrets of `credentialName` from the config store (secrets.ts) and the SNI-DNAT
// clusters of AUTO_PASSTHROUGH (clusters.ts).
export { gatewaysFor, mergedGateway, credentialNames, serverKind } from './merge.ts';
export type { MergedGateway, MergedPort, GatewayServer, ServerKind } from './merge.ts';
export { gatewayListeners, sniDnatClusterName } from './listeners.ts';
export { gatewayRoute, virtualServicesForGateway } from './routes.ts';
export { gatewaySecret, gatewaySecrets, authorizedSecretNames, secretsConcern } from './secrets.ts';
export { sniDnatClusters } from './clusters.ts';
export { serverTlsContext, parseCredentialResource, KUBERNETES_SECRET_PREFIX, CA_SUFFIX } from './tls.ts';
