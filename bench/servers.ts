/**
 * Two small HTTP servers for the peak-RSS runs, speaking just enough of the AWS protocols for the SDK:
 *
 * - an S3 endpoint that serves GetObject / HeadObject (path style) by streaming files from disk;
 * - an SQS endpoint (AWS JSON 1.0) that accepts SendMessageBatch, answers with the MD5 of each body
 *   (the SDK checks it) and discards the messages.
 *
 * Why not moto for these: a 1 GB CSV becomes about 5 GB of packed signals, which moto would keep in
 * the memory of one Python process (and take minutes to accept), and moto reads a whole object into
 * memory to serve it. The ingest code and its SDK clients are the real ones, over real HTTP; only the
 * far side is thinner. Both the 10 MB and the 1 GB runs use these same servers, so their peak RSS
 * compare like for like. The servers run in the benchmark's process, not in the measured child.
 */
import { createHash, randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { createReadStream } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { closeServer } from './lib.ts';

export interface LocalFile {
  readonly path: string;
  readonly size: number;
  /** Without quotes. */
  readonly etag: string;
}

export interface FileS3Server {
  readonly endpoint: string;
  /** Serves `path` as s3://bucket/key. */
  add(bucket: string, key: string, file: LocalFile): void;
  close(): Promise<void>;
}

export async function startFileS3Server(): Promise<FileS3Server> {
  const files = new Map<string, LocalFile>();
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const file = files.get(decodeURIComponent(url.pathname));
    if (!file || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404, { 'content-type': 'application/xml' });
      res.end('<Error><Code>NoSuchKey</Code><Message>not served here</Message></Error>');
      return;
    }
    const ifMatch = req.headers['if-match'];
    if (ifMatch !== undefined && ifMatch !== `"${file.etag}"`) {
      res.writeHead(412, { 'content-type': 'application/xml' });
      res.end('<Error><Code>PreconditionFailed</Code><Message>ETag does not match</Message></Error>');
      return;
    }
    // `bytes=a-b` or `bytes=a-` (ranged GETs of the parts of a split file and of a CSV header).
    const range = /^bytes=(\d+)-(\d*)$/.exec(String(req.headers.range ?? ''));
    const start = range ? Number(range[1]) : 0;
    const end = range?.[2] ? Math.min(Number(range[2]), file.size - 1) : file.size - 1;
    res.writeHead(range ? 206 : 200, {
      'content-type': 'text/csv',
      'content-length': String(Math.max(0, end - start + 1)),
      etag: `"${file.etag}"`,
      'last-modified': new Date(0).toUTCString(),
      'accept-ranges': 'bytes',
      ...(range ? { 'content-range': `bytes ${start}-${end}/${file.size}` } : {}),
    });
    if (req.method === 'HEAD' || end < start) {
      res.end();
      return;
    }
    createReadStream(file.path, { start, end }).pipe(res);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    add: (bucket, key, file) => files.set(`/${bucket}/${key}`, file),
    close: () => closeServer(server),
  };
}

export interface SqsSink {
  readonly endpoint: string;
  /** A queue URL on this endpoint. */
  readonly queueUrl: string;
  readonly stats: { requests: number; messages: number; bytes: number };
  close(): Promise<void>;
}

export async function startSqsSink(): Promise<SqsSink> {
  const stats = { requests: 0, messages: 0, bytes: 0 };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const target = String(req.headers['x-amz-target'] ?? '');
      if (target !== 'AmazonSQS.SendMessageBatch') {
        res.writeHead(400, { 'content-type': 'application/x-amz-json-1.0' });
        res.end(JSON.stringify({ __type: 'com.amazonaws.sqs#UnsupportedOperation', message: target }));
        return;
      }
      const input = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
        Entries: { Id: string; MessageBody: string }[];
      };
      stats.requests++;
      const Successful = input.Entries.map((e) => {
        stats.messages++;
        stats.bytes += Buffer.byteLength(e.MessageBody);
        return {
          Id: e.Id,
          MessageId: randomUUID(),
          MD5OfMessageBody: createHash('md5').update(e.MessageBody).digest('hex'),
        };
      });
      res.writeHead(200, { 'content-type': 'application/x-amz-json-1.0' });
      res.end(JSON.stringify({ Successful, Failed: [] }));
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  const endpoint = `http://127.0.0.1:${port}`;
  return {
    endpoint,
    queueUrl: `${endpoint}/123456789012/bench-sink`,
    stats,
    close: () => closeServer(server),
  };
}
