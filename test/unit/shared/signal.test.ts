import { deflateRawSync } from 'node:zlib';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  deflateMessage,
  encodeSignal,
  expandSignals,
  isoFromMs,
  normaliseEntry,
  normaliseSignal,
  parseSignal,
  readableMessageBody,
  readSignalMessage,
  type Signal,
  signalEntry,
} from '#shared/signal.ts';

const ctx = { origin: { kind: 's3' as const, ref: 's3://b/in/k.csv@e1#7' }, defaultSource: 'in/k.csv' };
const ok = (r: unknown) => {
  const out = normaliseSignal(r, ctx);
  if (!out.ok) throw new Error(`expected a signal, got: ${out.reason}`);
  return out.signal;
};
const reason = (r: unknown) => {
  const out = normaliseSignal(r, ctx);
  if (out.ok) throw new Error('expected a rejection');
  return out.reason;
};

describe('normaliseSignal', () => {
  it('normalises a complete record and keeps every other field in attributes', () => {
    // Prepare
    const record = {
      id: 'x-1',
      name: 'cpu',
      value: '12.5',
      source: 'host-a',
      timestamp: '2024-05-01T10:00:00+02:00',
      region: 'eu',
      up: true,
      n: 3,
    };
    // Act
    const s = ok(record);
    // Assess
    expect(s).toEqual({
      id: 'x-1',
      name: 'cpu',
      value: 12.5,
      source: 'host-a',
      timestamp: '2024-05-01T08:00:00.000Z',
      attributes: { region: 'eu', up: true, n: 3 },
      origin: ctx.origin,
    });
    expect(parseSignal(s).ok).toBe(true);
  });

  it('defaults id to the origin ref and source to the origin', () => {
    const s = ok({ name: 'cpu', value: 1, timestamp: 1_700_000_000 });
    expect(s.id).toBe('s3://b/in/k.csv@e1#7');
    expect(s.source).toBe('in/k.csv');
    expect(s.attributes).toBeUndefined();
  });

  it.each([['12x'], [''], ['NaN'], ['Infinity'], ['-Infinity'], ['0x10'], ['1,000'], ['1e400']])(
    'rejects the non-numeric or non-finite value %j',
    (value) => {
      expect(reason({ name: 'a', value, timestamp: 0 })).toMatch(/value/);
    },
  );

  it.each([
    ['42', 42],
    ['-3.5', -3.5],
    ['1e3', 1000],
    ['.5', 0.5],
    [' 7 ', 7],
    [0, 0],
  ])('accepts the wholly numeric value %j', (value, expected) => {
    expect(ok({ name: 'a', value, timestamp: 0 }).value).toBe(expected);
  });

  it('rejects a non-finite number, a boolean and a missing value', () => {
    expect(reason({ name: 'a', value: Number.POSITIVE_INFINITY, timestamp: 0 })).toMatch(/finite/);
    expect(reason({ name: 'a', value: true, timestamp: 0 })).toMatch(/value must be a number/);
    expect(reason({ name: 'a', timestamp: 0 })).toMatch(/value is required/);
  });

  it('reads epoch seconds and epoch milliseconds (>= 1e12 means ms), as numbers or strings', () => {
    expect(ok({ name: 'a', value: 1, timestamp: 1_700_000_000 }).timestamp).toBe('2023-11-14T22:13:20.000Z');
    expect(ok({ name: 'a', value: 1, timestamp: 1_700_000_000_123 }).timestamp).toBe(
      '2023-11-14T22:13:20.123Z',
    );
    expect(ok({ name: 'a', value: 1, timestamp: '1700000000' }).timestamp).toBe('2023-11-14T22:13:20.000Z');
    // Just below 1e12 is read as seconds: year 33658, beyond ISO-8601's four-digit years.
    expect(reason({ name: 'a', value: 1, timestamp: 999_999_999_999 })).toMatch(/out of range/);
    expect(ok({ name: 'a', value: 1, timestamp: 1e12 }).timestamp).toBe('2001-09-09T01:46:40.000Z');
  });

  it('normalises ISO-8601 with any zone to UTC and rejects one without a zone', () => {
    expect(ok({ name: 'a', value: 1, timestamp: '2024-02-29T23:30:00-01:00' }).timestamp).toBe(
      '2024-03-01T00:30:00.000Z',
    );
    expect(ok({ name: 'a', value: 1, timestamp: '2024-02-29 10:00:00.5Z' }).timestamp).toBe(
      '2024-02-29T10:00:00.500Z',
    );
    expect(reason({ name: 'a', value: 1, timestamp: '2024-02-29T10:00:00' })).toMatch(/no time zone/);
    expect(reason({ name: 'a', value: 1, timestamp: '2023-02-29T10:00:00Z' })).toMatch(/not a valid date/);
    expect(reason({ name: 'a', value: 1, timestamp: 'yesterday' })).toMatch(/neither ISO-8601/);
    expect(reason({ name: 'a', value: 1 })).toMatch(/timestamp is required/);
  });

  it('rejects a missing, blank, non-string or over-long name', () => {
    expect(reason({ value: 1, timestamp: 0 })).toMatch(/name is required/);
    // A field named in another case or with spaces around it is pointed out.
    expect(reason({ Name: 'a', ' value ': 1, timestamp: 0 })).toBe(
      'name is required; value is required (the record has "Name", " value ": field names are matched exactly, in lower case)',
    );
    expect(reason({ name: 'a', VALUE: '1', value: '2', timestamp: 'x' })).not.toMatch(/the record has/);
    expect(reason({ name: '   ', value: 1, timestamp: 0 })).toMatch(/blank/);
    expect(reason({ name: 5, value: 1, timestamp: 0 })).toMatch(/name must be a string/);
    expect(reason({ name: 'n'.repeat(257), value: 1, timestamp: 0 })).toMatch(/256/);
    expect(ok({ name: 'n'.repeat(256), value: 1, timestamp: 0 }).name).toHaveLength(256);
  });

  it('reports every problem of a record at once', () => {
    expect(reason({ value: 'x', timestamp: 'no' }).split('; ')).toHaveLength(3);
  });

  it('rejects something that is not an object', () => {
    expect(reason([1, 2])).toMatch(/an array/);
    expect(reason(null)).toMatch(/null/);
  });

  it('rejects, never throws, an attribute nested deeper than the stack allows', () => {
    // Prepare: 100,000 nested arrays (a short line of text; JSON.stringify overflows the stack on it).
    let deep: unknown = [];
    for (let i = 0; i < 100_000; i++) deep = [deep];
    const record = { name: 'cpu', value: 1, timestamp: 0, a: deep };
    // Act
    const out = normaliseSignal(record, ctx);
    // Assess
    expect(out.ok).toBe(false);
    expect(out.ok ? '' : out.reason).toMatch(
      /^a cannot be kept as an attribute \(Maximum call stack size exceeded\)/,
    );
  });

  it('keeps nested values as JSON text and merges an attributes object', () => {
    const s = ok({
      name: 'a',
      value: 1,
      timestamp: 0,
      tags: ['x'],
      attributes: { zone: 'b', deep: { k: 1 } },
      nothing: null,
    });
    expect(s.attributes).toEqual({ tags: '["x"]', zone: 'b', deep: '{"k":1}' });
  });

  it('accepts Date and bigint inputs (Parquet columns)', () => {
    const s = ok({ name: 'a', value: 5n, timestamp: new Date('2024-01-01T00:00:00Z'), big: 2n ** 70n });
    expect(s.value).toBe(5);
    expect(s.timestamp).toBe('2024-01-01T00:00:00.000Z');
    expect(s.attributes).toEqual({ big: (2n ** 70n).toString() });
  });

  it('rejects a signal too large for a packed message', () => {
    expect(reason({ name: 'a', value: 1, timestamp: 0, blob: 'x'.repeat(70_000) })).toMatch(/byte limit/);
  });

  it('measures a signal exactly when the bound cannot settle it: escaping counts, and near the limit passes', () => {
    // 11,000 control characters are 66,000 bytes once escaped (\u0001): over 64 KiB though only 11,000 long.
    expect(reason({ name: 'a', value: 1, timestamp: 0, blob: '\u0001'.repeat(11_000) })).toMatch(
      /byte limit/,
    );
    // 60,000 plain characters: over the bound (× 6), under the limit once measured.
    expect(ok({ name: 'a', value: 1, timestamp: 0, blob: 'x'.repeat(60_000) }).attributes?.blob).toHaveLength(
      60_000,
    );
  });

  it('takes a canonical timestamp as it is, and still rejects an impossible one of the same shape', () => {
    expect(ok({ name: 'a', value: 1, timestamp: '2024-02-29T23:59:59.999Z' }).timestamp).toBe(
      '2024-02-29T23:59:59.999Z',
    );
    expect(reason({ name: 'a', value: 1, timestamp: '2023-02-29T00:00:00.000Z' })).toMatch(
      /not a valid date/,
    );
    expect(reason({ name: 'a', value: 1, timestamp: '2024-13-01T00:00:00.000Z' })).toMatch(
      /not a valid date/,
    );
  });

  it('reads an hour-only offset, pads of any length, and names a leap second as the reason it is refused', () => {
    const at = (timestamp: unknown) => ok({ name: 'a', value: 1, timestamp }).timestamp;
    expect(at('2024-01-01T05:30:00+05')).toBe('2024-01-01T00:30:00.000Z');
    expect(at('2024-01-01T05:30:00-0130')).toBe('2024-01-01T07:00:00.000Z');
    expect(at('2024-01-01 05:30:00,25+05:30')).toBe('2024-01-01T00:00:00.250Z');
    // 24 characters, the canonical length, with spaces around: trimmed like any other length
    expect(at('  2024-01-01T00:00:00Z  ')).toBe('2024-01-01T00:00:00.000Z');
    expect(at(' 2024-01-01T00:00:00.5Z ')).toBe('2024-01-01T00:00:00.500Z');
    expect(at('    1704067200000       ')).toBe('2024-01-01T00:00:00.000Z');
    expect(reason({ name: 'a', value: 1, timestamp: '2016-12-31T23:59:60Z' })).toBe(
      'timestamp "2016-12-31T23:59:60Z" is a leap second (:60), which a signal\'s timestamp cannot hold',
    );
  });

  it('rejects a record giving an attribute both as a field and inside attributes, rather than keep one', () => {
    expect(
      reason({ name: 'a', value: 1, timestamp: 0, host: 'web-1', attributes: { host: 'web-2', rack: 'r1' } }),
    ).toBe('host is given twice, as a field and inside attributes');
    expect(
      ok({ name: 'a', value: 1, timestamp: 0, host: 'web-1', attributes: { rack: 'r1' } }).attributes,
    ).toEqual({
      host: 'web-1',
      rack: 'r1',
    });
  });

  it('rejects a value beyond ±1e50 or nearer 0 than 1e-100, which a series could not keep', () => {
    expect(reason({ name: 'a', value: '2e50', timestamp: 0 })).toBe(
      'value 2e+50 is beyond ±1e+50, more than a series can keep',
    );
    expect(reason({ name: 'a', value: -1e-120, timestamp: 0 })).toBe(
      'value -1e-120 is nearer 0 than 1e-100, less than a series can keep (0 itself is fine)',
    );
    for (const value of [0, -1e50, 1e-100, 123456789012345680000]) {
      expect(ok({ name: 'a', value, timestamp: 0 }).value).toBe(value);
    }
  });

  it('keeps a column named __proto__ as an attribute instead of dropping it', () => {
    const record = JSON.parse('{"name":"a","value":1,"timestamp":0,"__proto__":"p"}');
    const s = ok(record);
    expect(Object.hasOwn(s.attributes ?? {}, '__proto__')).toBe(true);
    expect(JSON.parse(JSON.stringify(s)).attributes).toEqual(JSON.parse('{"__proto__":"p"}'));
  });
});

describe('packed message entries (version 3)', () => {
  const message = { kind: 's3' as const, ref: 's3://b/in/k.csv@e1' };
  const source = 'in/k.csv';
  const base: Signal = {
    id: 's3://b/in/k.csv@e1#7',
    name: 'cpu',
    value: 1.5,
    source,
    timestamp: '2024-01-01T00:00:00.000Z',
    origin: { kind: 's3', ref: 's3://b/in/k.csv@e1#7' },
  };
  const entry = (s: Signal) => JSON.parse(encodeSignal(s, message, source));
  const roundTrip = (signals: Signal[]) =>
    expandSignals({ v: 3, origin: message, source, signals: signals.map(entry) });

  it('leaves out the origin, the id and the source an entry can take from its message, and restores them', () => {
    expect(entry(base)).toEqual(['#7', 'cpu', 1.5, '2024-01-01T00:00:00.000Z']);
    expect(roundTrip([base])).toEqual([base]);
  });

  it("keeps attributes, a source and an id of the record's own, and an origin the message does not cover", () => {
    const attrs = { ...base, attributes: { host: 'a', n: 2, up: true } };
    const ownSource = { ...base, source: 'web-1' };
    const ownId = { ...base, id: 'x-1' };
    const all = { ...attrs, source: 'web-2', id: 'x-2' };
    const foreign: Signal = { ...base, id: 'kafka:t:0:5', origin: { kind: 'kafka', ref: 'kafka:t:0:5' } };
    expect(entry(attrs)).toEqual(['#7', 'cpu', 1.5, base.timestamp, { host: 'a', n: 2, up: true }]);
    expect(entry(ownSource)).toEqual(['#7', 'cpu', 1.5, base.timestamp, null, 'web-1']);
    expect(entry(ownId)).toEqual(['#7', 'cpu', 1.5, base.timestamp, null, null, 'x-1']);
    expect(entry(all)).toEqual(['#7', 'cpu', 1.5, base.timestamp, attrs.attributes, 'web-2', 'x-2']);
    expect(entry(foreign)).toEqual(foreign);
    expect(roundTrip([attrs, ownSource, ownId, all, foreign])).toEqual([
      attrs,
      ownSource,
      ownId,
      all,
      foreign,
    ]);
  });

  it('restores no source when neither the entry nor the message has one, for validation to reject', () => {
    const [s] = expandSignals({ v: 3, origin: message, signals: [['#7', 'cpu', 1.5, base.timestamp]] });
    expect(parseSignal(s)).toMatchObject({ ok: false, reason: expect.stringContaining('source') });
  });

  it('restores an epoch-millisecond timestamp, and leaves one out of range for validation to reject', () => {
    const at = (timestamp: unknown) =>
      expandSignals({ v: 3, origin: message, source, signals: [['#7', 'cpu', 1.5, timestamp]] });
    expect(at(Date.parse(base.timestamp))).toEqual([base]);
    expect(at(1.5)).toEqual([{ ...base, timestamp: '1970-01-01T00:00:00.001Z' }]);
    const [far] = at(1e20);
    expect(far).toMatchObject({ timestamp: 1e20 });
    expect(parseSignal(far)).toMatchObject({ ok: false, reason: expect.stringContaining('timestamp') });
  });

  it('hands whole signals and entries of another shape through for validation to judge', () => {
    expect(expandSignals({ v: 3, origin: message, signals: [base, 3] })).toEqual([base, 3]);
    expect(expandSignals({ v: 3, origin: message, signals: [null, 'x'] })).toEqual([null, 'x']);
  });
});

describe('readSignalMessage', () => {
  const origin = { kind: 's3' as const, ref: 's3://b/in/k.csv@e1' };
  const v3 = { v: 3, origin, source: 'in/k.csv', signals: [['#7', 'cpu', 1.5, '2024-01-01T00:00:00.000Z']] };
  const wrap = (deflated: string) => JSON.stringify({ v: 4, origin, count: 1, deflated });
  const failure = (body: string) => {
    const read = readSignalMessage(body);
    if (read.ok) throw new Error('expected a failure');
    return read;
  };

  it('reads a plain message and the same message deflated (version 4)', () => {
    const text = JSON.stringify(v3);
    const body = deflateMessage(text, origin, 1, 1);
    expect(JSON.parse(body)).toMatchObject({ v: 4, origin, count: 1 });
    expect(readSignalMessage(text)).toEqual({ ok: true, message: v3 });
    expect(readSignalMessage(body)).toEqual({ ok: true, message: v3 });
    expect(readableMessageBody(body)).toBe(text);
    expect(readableMessageBody(text)).toBe(text);
  });

  it('says why a body is not a message: not JSON, a bad wrapper, data that does not inflate or is not a message', () => {
    expect(failure('not json')).toMatchObject({ reason: expect.stringMatching(/^message is not JSON/) });
    expect(failure(JSON.stringify({ v: 4, origin }))).toMatchObject({
      reason: expect.stringMatching(/^message is not a signal batch: .*deflated/),
      json: { v: 4, origin },
    });
    expect(failure(wrap('not deflate data'))).toMatchObject({
      reason: expect.stringMatching(/^message's deflated signals do not inflate/),
    });
    expect(failure(wrap(deflateRawSync('{"v":3,').toString('base64')))).toMatchObject({
      reason: expect.stringMatching(/^message's inflated signals are not JSON/),
    });
    // A version 4 message inside another is not a message.
    const nested = deflateMessage(deflateMessage(JSON.stringify(v3), origin, 1, 1), origin, 1, 1);
    expect(failure(nested)).toMatchObject({
      reason: expect.stringMatching(/^message is not a signal batch: v/),
    });
    expect(readableMessageBody(wrap('not deflate data'))).toBe(wrap('not deflate data'));
  });

  it('refuses versions 1 and 2, which nothing writes (and their deflated forms): not a signal batch', () => {
    // Prepare
    const whole = {
      id: 'x',
      name: 'cpu',
      value: 1.5,
      source: 'in/k.csv',
      timestamp: '2024-01-01T00:00:00.000Z',
      origin: { kind: 's3', ref: `${origin.ref}#7` },
    };
    const v1 = JSON.stringify({ v: 1, origin, signals: [whole] });
    const v2 = JSON.stringify({
      v: 2,
      origin,
      signals: [{ at: '#7', name: 'cpu', value: 1.5, source: 'k' }],
    });
    // Act
    const read = [v1, v2, deflateMessage(v1, origin, 1, 1)].map((body) => readSignalMessage(body));
    // Assess
    for (const r of read) {
      expect(r).toMatchObject({
        ok: false,
        kind: 'not-a-batch',
        reason: expect.stringMatching(/^message is not a signal batch: v/),
      });
    }
    expect(readSignalMessage(JSON.stringify({ v: 3, origin, signals: [whole] }))).toMatchObject({ ok: true });
  });

  it('refuses to inflate past 8 MiB, whatever the body claims', () => {
    const bomb = deflateRawSync(Buffer.alloc(9 * 1024 * 1024, 32)).toString('base64');
    expect(bomb.length).toBeLessThan(64 * 1024);
    expect(failure(wrap(bomb))).toMatchObject({
      reason: expect.stringMatching(/^message's deflated signals do not inflate: .*(buffer|length|size)/i),
    });
  });
});

describe('parseSignal', () => {
  it("accepts the id a row of a file gets under a key of S3's longest, and no id past the ref limit", () => {
    // Prepare: a row of an object whose key takes S3's 1,024 bytes, in a bucket of the longest name.
    const ref = `s3://${'b'.repeat(63)}/${'k'.repeat(1024)}@${'0'.repeat(32)}-10000#9007199254740991`;
    const signal = (id: string) => ({
      id,
      name: 'a',
      value: 1,
      source: 'k'.repeat(1024),
      timestamp: '2024-01-01T00:00:00.000Z',
      origin: { kind: 's3', ref },
    });
    // Act
    const [fits, tooLong] = [parseSignal(signal(ref)), parseSignal(signal('x'.repeat(2049)))];
    // Assess
    expect(fits.ok).toBe(true);
    expect(tooLong.ok).toBe(false);
  });

  it('rejects a signal off the queue whose value is not a number', () => {
    const out = parseSignal({
      id: 'a',
      name: 'a',
      value: '1',
      source: 's',
      timestamp: '2024-01-01T00:00:00.000Z',
      origin: { kind: 's3', ref: 'r' },
    });
    expect(out.ok).toBe(false);
    if (!out.ok) expect(out.reason).toMatch(/^value/);
  });
});

describe('isoFromMs', () => {
  const MIN = Date.parse('0001-01-01T00:00:00.000Z');
  const MAX = Date.parse('9999-12-31T23:59:59.999Z');

  it('formats exactly as Date#toISOString over the whole range, fractions and negatives included', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.integer({ min: MIN, max: MAX }), fc.double({ min: MIN, max: MAX, noNaN: true })),
        (ms) => {
          expect(isoFromMs(ms)).toBe(new Date(ms).toISOString());
        },
      ),
      { numRuns: 5000 },
    );
  });

  it('formats the edges of a day and of the range, and consecutive calls across days', () => {
    for (const iso of [
      '1970-01-01T00:00:00.000Z',
      '1969-12-31T23:59:59.999Z',
      '2024-02-29T23:59:59.999Z',
      '2024-03-01T00:00:00.000Z',
      '0001-01-01T00:00:00.000Z',
      '9999-12-31T23:59:59.999Z',
    ]) {
      expect(isoFromMs(Date.parse(iso))).toBe(iso);
    }
  });
});

describe('normaliseEntry', () => {
  const message = { kind: 's3' as const, ref: 's3://b/in/k.csv@e1' };
  const source = 'in/k.csv';
  const anyValue = fc.oneof(
    fc.constant(undefined),
    fc.constant(null),
    fc.constant(''),
    fc.string({ maxLength: 8 }),
    fc.boolean(),
    fc.integer(),
    fc.double(),
    fc.constantFrom('12.5', ' 7 ', '1e3', 'NaN', '12x', '1700000000', '1700000000000'),
    fc.constantFrom('2024-05-01T12:00:05.000Z', '2024-05-01 12:00:05+02:00', '2024-02-30T00:00:00Z'),
    // Ids equal to the origin's ref, sources equal to the default: left out of the entry.
    fc.constantFrom('s3://b/in/k.csv@e1#7', source, 'other.csv'),
    // Near and over the signal size limit: measured exactly.
    fc.constantFrom('x'.repeat(12_000), 'é'.repeat(30_000), 'y'.repeat(70_000)),
    fc.dictionary(fc.string({ maxLength: 4 }), fc.oneof(fc.string({ maxLength: 4 }), fc.integer())),
  );
  const record = fc.record(
    {
      name: anyValue,
      value: anyValue,
      timestamp: anyValue,
      id: anyValue,
      source: anyValue,
      attributes: anyValue,
      Name: anyValue,
      host: anyValue,
    },
    { requiredKeys: [] },
  );

  it("makes the entry signalEntry makes of normaliseSignal's signal (with epoch milliseconds), or gives its reason", () => {
    fc.assert(
      fc.property(record, fc.integer({ min: 1, max: 1_000_000 }), fc.boolean(), (generated, row, ownRef) => {
        const at = `#${row}`;
        // Sometimes the record's id is its own origin ref, which the entry leaves out.
        const rec = ownRef ? { ...generated, id: `${message.ref}${at}` } : generated;
        const whole = normaliseSignal(rec, {
          origin: { kind: 's3', ref: `${message.ref}${at}` },
          defaultSource: source,
        });
        const direct = normaliseEntry(rec, at, message, source);
        if (!whole.ok) {
          expect(direct).toEqual(whole);
          return;
        }
        if (!direct.ok) throw new Error(direct.reason);
        const expected = [...(signalEntry(whole.signal, message, source) as unknown[])];
        expected[3] = Date.parse(whole.signal.timestamp);
        expect(direct.entry).toEqual(expected);
        // The scorer's side: the entry expands into the same signal.
        expect(expandSignals({ v: 3, origin: message, source, signals: [direct.entry] })).toEqual([
          whole.signal,
        ]);
      }),
      { seed: 20261201, numRuns: 3000 },
    );
  });

  it('leaves out what the message says, and keeps what it does not', () => {
    const base = { name: 'cpu', value: '1.5', timestamp: 1_700_000_000 };
    const entry = (rec: object, row = 7) => {
      const out = normaliseEntry(rec, `#${row}`, message, source);
      if (!out.ok) throw new Error(out.reason);
      return out.entry;
    };
    const ts = 1_700_000_000_000;
    expect(entry(base)).toEqual(['#7', 'cpu', 1.5, ts]);
    expect(entry({ ...base, id: 's3://b/in/k.csv@e1#7', source })).toEqual(['#7', 'cpu', 1.5, ts]);
    expect(entry({ ...base, host: 'h' })).toEqual(['#7', 'cpu', 1.5, ts, { host: 'h' }]);
    expect(entry({ ...base, source: 'web-1' })).toEqual(['#7', 'cpu', 1.5, ts, null, 'web-1']);
    expect(entry({ ...base, id: 'own' })).toEqual(['#7', 'cpu', 1.5, ts, null, null, 'own']);
  });
});
