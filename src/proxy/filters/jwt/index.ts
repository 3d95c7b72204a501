// The JWT room: Envoy's `envoy.filters.http.jwt_authn` and Istio's `istio_authn` as the
// sidecar runs them for RequestAuthentication (compileJwtAuthn, authenticate).
export { authenticate, compileJwtAuthn, istioAuthnMetadata, ISTIO_AUTHN_TYPE, JWT_AUTHN_TYPE } from './jwt-authn.ts';
export type { JwtFilter, JwtOutcome, JwtProvider } from './jwt-authn.ts';
