/**
 * The non-default configuration the routes end-to-end test runs offline (`pulse local up --config`), as
 * the object `-c pulse` takes: the IAM parity test builds its template with it too, so that the calls
 * that run makes (reads under `meters/`, the copy to `archive/`, the delete of the version) are held to
 * the grants the stack gives for it.
 */
export const ROUTES_CONFIG = {
  s3: {
    routes: [
      { prefix: 'incoming/' },
      {
        prefix: 'meters/',
        include: ['meters/**/*.csv'],
        mapping: { name: 'metric', value: 'val', timestamp: 'ts' },
        csv: { delimiter: ';' },
        afterSuccess: { archivePrefix: 'archive/' },
      },
    ],
  },
};
