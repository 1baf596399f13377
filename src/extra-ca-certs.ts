/**
 * bin/git-panini starts Node without NODE_EXTRA_CA_CERTS, which Node would parse in full at every
 * start (~60 ms for a system bundle), and passes the file on as PANINI_EXTRA_CA_CERTS. Imported first
 * by the CLI: the variable is put back for the programs git-panini runs, and the S3 client adds the
 * file's certificates itself (store/s3.ts).
 */
export const deferredCaFile = process.env.PANINI_EXTRA_CA_CERTS || undefined;
if (deferredCaFile !== undefined) {
  process.env.NODE_EXTRA_CA_CERTS ??= deferredCaFile;
  delete process.env.PANINI_EXTRA_CA_CERTS;
}
