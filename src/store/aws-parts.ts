/**
 * The parts of the AWS SDK that S3 requests need besides its client (src/store/s3-requests.ts): the
 * default credential chain, S3's endpoint rules and the shared-config loaders that feed them, and
 * the SigV4 signer. `npm run build` bundles this file into dist/src/store/aws-parts.cjs (~100 KB:
 * ~14 ms to load, against ~70 ms for the client, which also runs ~35 ms more before its first
 * request; BENCHMARKS.md). The chain's rarer providers (SSO, profiles, processes, web identity,
 * container and instance metadata) stay out of the bundle: the chain requires them from
 * node_modules when it reaches them.
 */
export { defaultProvider } from '@aws-sdk/credential-provider-node';
export { commonParams } from '@aws-sdk/client-s3/dist-es/endpoint/EndpointParameters.js';
export { defaultEndpointResolver } from '@aws-sdk/client-s3/dist-es/endpoint/endpointResolver.js';
export {
  loadConfig, NODE_REGION_CONFIG_FILE_OPTIONS, NODE_REGION_CONFIG_OPTIONS, NODE_USE_DUALSTACK_ENDPOINT_CONFIG_OPTIONS, NODE_USE_FIPS_ENDPOINT_CONFIG_OPTIONS,
} from '@smithy/core/config';
export { getEndpointFromInstructions } from '@smithy/core/endpoints';
export { SignatureV4 } from '@smithy/signature-v4';
