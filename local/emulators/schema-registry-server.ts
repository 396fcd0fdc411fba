import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';

/**
 * A stand-in for a Confluent Schema Registry, speaking the part of its REST API that producers,
 * the offline Kafka event source and the tests use (Confluent's "Schema Registry API Reference"):
 *
 * - `POST /subjects/{subject}/versions` `{ schema, schemaType?, references? }` → `{ id }`: registers a
 *   schema under a subject; the same schema text gets the same id again (in any subject), as Confluent's
 *   registry does;
 * - `GET /schemas/ids/{id}` → `{ schema }` (plus `schemaType` unless AVRO); an unknown id answers 404
 *   `{ error_code: 40403, message: "Schema <id> not found" }`;
 * - `GET /subjects`, `GET /subjects/{subject}/versions`, `GET /subjects/{subject}/versions/{version|latest}`.
 *
 * No compatibility checks, references, modes or authentication: the stand-in is for reading records, as
 * the event source mapping does. Its state is kept in memory and, with a state file, written after each
 * registration and read at start, so a restarted `pulse local up` keeps its ids.
 */
export type SchemaType = 'AVRO' | 'PROTOBUF' | 'JSON';

export interface RegisteredSchema {
  readonly id: number;
  readonly schema: string;
  readonly schemaType: SchemaType;
}

interface State {
  schemas: RegisteredSchema[];
  /** subject → the ids of its versions, version 1 first. */
  subjects: Record<string, number[]>;
}

export interface SchemaRegistryServerOptions {
  readonly host?: string;
  readonly port: number;
  readonly stateFile?: string;
}

export function startSchemaRegistryServer(options: SchemaRegistryServerOptions): Promise<Server> {
  const state: State =
    options.stateFile && existsSync(options.stateFile)
      ? (JSON.parse(readFileSync(options.stateFile, 'utf8')) as State)
      : { schemas: [], subjects: {} };
  const save = () => {
    if (!options.stateFile) return;
    writeFileSync(`${options.stateFile}.tmp`, JSON.stringify(state));
    renameSync(`${options.stateFile}.tmp`, options.stateFile);
  };
  const server = createServer((req, res) => {
    handle(state, save, req, res).catch((err: unknown) =>
      send(res, 500, { error_code: 50001, message: String(err) }),
    );
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host ?? '127.0.0.1', () => resolve(server));
  });
}

const SCHEMA_TYPES = new Set<SchemaType>(['AVRO', 'PROTOBUF', 'JSON']);

async function handle(state: State, save: () => void, req: IncomingMessage, res: ServerResponse) {
  const url = new URL(req.url ?? '/', 'http://registry');
  const parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
  const [a, b, c, d] = parts;
  if (req.method === 'GET' && a === 'schemas' && b === 'ids' && c !== undefined && parts.length === 3) {
    const found = state.schemas.find((s) => String(s.id) === c);
    if (!found) return send(res, 404, { error_code: 40403, message: `Schema ${c} not found` });
    return send(res, 200, schemaBody(found));
  }
  if (a !== 'subjects') return send(res, 404, { error_code: 404, message: 'HTTP 404 Not Found' });
  if (req.method === 'GET' && parts.length === 1) return send(res, 200, Object.keys(state.subjects));
  const versions = b === undefined ? undefined : state.subjects[b];
  if (req.method === 'POST' && b !== undefined && c === 'versions' && parts.length === 3) {
    const body = JSON.parse((await readBody(req)) || '{}') as { schema?: unknown; schemaType?: unknown };
    const schemaType = (body.schemaType ?? 'AVRO') as SchemaType;
    if (typeof body.schema !== 'string' || !SCHEMA_TYPES.has(schemaType)) {
      return send(res, 422, { error_code: 42201, message: 'Invalid schema' });
    }
    let found = state.schemas.find((s) => s.schema === body.schema && s.schemaType === schemaType);
    if (!found) {
      found = { id: state.schemas.length + 1, schema: body.schema, schemaType };
      state.schemas.push(found);
    }
    const own = state.subjects[b] ?? [];
    if (!own.includes(found.id)) own.push(found.id);
    state.subjects[b] = own;
    save();
    return send(res, 200, { id: found.id });
  }
  if (!versions) return send(res, 404, { error_code: 40401, message: `Subject '${b}' not found.` });
  if (req.method === 'GET' && c === 'versions' && parts.length === 3) {
    return send(
      res,
      200,
      versions.map((_, i) => i + 1),
    );
  }
  if (req.method === 'GET' && c === 'versions' && d !== undefined && parts.length === 4) {
    const index = d === 'latest' ? versions.length - 1 : Number(d) - 1;
    const id = versions[index];
    const found = state.schemas.find((s) => s.id === id);
    if (!found) return send(res, 404, { error_code: 40402, message: `Version ${d} not found.` });
    return send(res, 200, { subject: b, version: index + 1, ...schemaBody(found), id: found.id });
  }
  return send(res, 405, { error_code: 405, message: 'HTTP 405 Method Not Allowed' });
}

function schemaBody(s: RegisteredSchema) {
  return { schema: s.schema, ...(s.schemaType === 'AVRO' ? {} : { schemaType: s.schemaType }) };
}

function send(res: ServerResponse, status: number, body: unknown) {
  res.writeHead(status, { 'content-type': 'application/vnd.schemaregistry.v1+json' });
  res.end(JSON.stringify(body));
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** `node bin/schema-registry.js --port N [--host H] [--state FILE]`: the stand-in as its own process. */
export async function main(argv: readonly string[]): Promise<void> {
  const arg = (name: string) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const port = Number(arg('--port'));
  const stateFile = arg('--state');
  const host = arg('--host') ?? '127.0.0.1';
  const server = await startSchemaRegistryServer({ host, port, ...(stateFile ? { stateFile } : {}) });
  process.stdout.write(`schema registry stand-in listening on http://${host}:${port}\n`);
  const stop = () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}
