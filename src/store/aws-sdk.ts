/**
 * The parts of the AWS SDK that src/store/s3.ts uses. `npm run build` bundles this file with the SDK
 * into dist/src/store/aws-sdk.cjs, from the SDK's ES modules so that esbuild leaves out what these
 * exports never reach, and s3.ts requires that file: an S3 command then reaches its first request
 * ~20 ms sooner than with the SDK's own CommonJS files (a fifth of the SDK's cost; BENCHMARKS.md).
 */
export { AbortMultipartUploadCommand, DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
export { Upload } from '@aws-sdk/lib-storage';
