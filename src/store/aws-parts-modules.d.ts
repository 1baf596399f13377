// The S3 client's endpoint rules, imported from its ES modules (which ship no declarations of their own).
declare module '@aws-sdk/client-s3/dist-es/endpoint/EndpointParameters.js' {
  export { commonParams } from '@aws-sdk/client-s3/dist-types/endpoint/EndpointParameters.js';
}
declare module '@aws-sdk/client-s3/dist-es/endpoint/endpointResolver.js' {
  export { defaultEndpointResolver } from '@aws-sdk/client-s3/dist-types/endpoint/endpointResolver.js';
}
