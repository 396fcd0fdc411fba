import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type SchemaRegistryServer, startSchemaRegistry } from '../../local/emulators/schema-registry.ts';
import { confluentLookup } from '../../local/event-sources/kafka-registry.ts';

/**
 * The Confluent Schema Registry stand-in as its own process: the REST calls producers and the event
 * source emulation make, its state file, and a stop by its pid.
 */
describe('schema registry stand-in', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pulse-registry-'));
  const servers: SchemaRegistryServer[] = [];
  afterAll(async () => {
    await Promise.all(servers.map((s) => s.stop()));
    rmSync(dir, { recursive: true, force: true });
  });

  const post = async (url: string, subject: string, body: object) => {
    const res = await fetch(`${url}/subjects/${subject}/versions`, {
      method: 'POST',
      headers: { 'content-type': 'application/vnd.schemaregistry.v1+json' },
      body: JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };

  it('registers schemas under subjects, serves them by id (404 40403 for an unknown one), keeps them across a restart, and stops by pid', async () => {
    // Prepare
    const stateFile = join(dir, 'registry.json');
    const first = await startSchemaRegistry({ stateFile });
    servers.push(first);
    const avro = JSON.stringify({ type: 'record', name: 'S', fields: [{ name: 'name', type: 'string' }] });
    const proto = 'syntax = "proto3"; message S { string name = 1; }';

    // Act
    const a = await post(first.url, 'signals-value', { schema: avro });
    const again = await post(first.url, 'other-value', { schema: avro });
    const p = await post(first.url, 'signals-value', { schema: proto, schemaType: 'PROTOBUF' });
    const bad = await post(first.url, 'signals-value', { schema: 1 });
    const byId = await (await fetch(`${first.url}/schemas/ids/${p.body.id}`)).json();
    const missing = await fetch(`${first.url}/schemas/ids/999`);
    const versions = await (await fetch(`${first.url}/subjects/signals-value/versions`)).json();
    const latest = await (await fetch(`${first.url}/subjects/signals-value/versions/latest`)).json();
    const subjects = await (await fetch(`${first.url}/subjects`)).json();
    const lookup = confluentLookup(first.url);
    const found = await lookup.schemaById(String(a.body.id));
    const notFound = await lookup.schemaById('999');
    await first.stop();
    const stopped = (() => {
      try {
        process.kill(first.pid, 0);
        return false;
      } catch {
        return true;
      }
    })();
    const second = await startSchemaRegistry({ stateFile });
    servers.push(second);
    const kept = await confluentLookup(second.url).schemaById(String(p.body.id));

    // Assess
    expect(a).toEqual({ status: 200, body: { id: 1 } });
    expect(again.body).toEqual({ id: 1 }); // the same schema keeps its id in any subject
    expect(p.body).toEqual({ id: 2 });
    expect(bad.status).toBe(422);
    expect(byId).toEqual({ schema: proto, schemaType: 'PROTOBUF' });
    expect(missing.status).toBe(404);
    expect(await missing.json()).toEqual({ error_code: 40403, message: 'Schema 999 not found' });
    expect(versions).toEqual([1, 2]);
    expect(latest).toEqual({
      subject: 'signals-value',
      version: 2,
      id: 2,
      schema: proto,
      schemaType: 'PROTOBUF',
    });
    expect(subjects).toEqual(['signals-value', 'other-value']);
    expect(found).toEqual({ format: 'AVRO', schema: avro });
    expect(notFound).toBeUndefined();
    expect(stopped).toBe(true);
    expect(existsSync(stateFile) && JSON.parse(readFileSync(stateFile, 'utf8')).schemas).toHaveLength(2);
    expect(kept).toEqual({ format: 'PROTOBUF', schema: proto });
  });
});
