import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { mockClient } from 'aws-sdk-client-mock';
import type { KafkaMessage } from 'kafkajs';
import { afterEach, describe, expect, it } from 'vitest';
import { parseKafkaEvent } from '../../../../functions/kafka-consumer/events.ts';
import {
  buildKafkaEvent,
  type KafkaBatchFailure,
  kafkaFailureRecord,
  toKafkaEventRecord,
} from '../../../../local/event-sources/kafka.ts';
import {
  emulatedMappingUuid,
  kafkaFailureObject,
  kafkaFailureObjectKey,
  s3OnFailureDestination,
  sqsOnFailureDestination,
} from '../../../../local/event-sources/kafka-failure-destinations.ts';

const message = (offset: number, value: string): KafkaMessage =>
  ({
    offset: String(offset),
    timestamp: String(1_718_000_000_000 + offset),
    attributes: 0,
    key: null,
    value: Buffer.from(value),
    headers: {},
  }) as KafkaMessage;

/** A batch of offsets 7 and 8 of partition 2 that failed its 3 attempts. */
function failureFactory(): KafkaBatchFailure {
  const event = buildKafkaEvent(
    [
      toKafkaEventRecord('pulse_signals', 2, message(7, '{"a":1}')),
      toKafkaEventRecord('pulse_signals', 2, message(8, '{"a":2}')),
    ],
    { eventSource: 'aws:kafka', bootstrapServers: 'b-1:9098' },
  );
  return {
    record: kafkaFailureRecord(event, {
      functionArn: 'arn:aws:lambda:us-east-1:000000000000:function:c',
      invokeCount: 3,
    }),
    event,
    topicPartition: 'pulse_signals-2',
    error: new Error('AccessDenied'),
  };
}

describe('what the emulated Kafka event source writes to its on-failure destination', () => {
  const s3 = mockClient(S3Client);
  const sqs = mockClient(SQSClient);
  afterEach(() => {
    s3.reset();
    sqs.reset();
  });

  it('an S3 destination gets the invocation record and the whole event as a JSON string, in the fields and order AWS documents', () => {
    // Prepare
    const failure = failureFactory();

    // Act
    const object = JSON.parse(JSON.stringify(kafkaFailureObject(failure)));

    // Assess
    expect(Object.keys(object)).toEqual([
      'requestContext',
      'responseContext',
      'version',
      'timestamp',
      'KafkaBatchInfo',
      'payload',
    ]);
    expect(object.requestContext).toMatchObject({
      condition: 'RetryAttemptsExhausted',
      approximateInvokeCount: 3,
    });
    expect(object.responseContext).toEqual({
      statusCode: 200,
      executedVersion: '$LATEST',
      functionError: 'Unhandled',
    });
    expect(object.KafkaBatchInfo).toMatchObject({
      batchSize: 2,
      bootstrapServers: 'b-1:9098',
      recordsInfo: { 'pulse_signals-2': { firstRecordOffset: '7', lastRecordOffset: '8' } },
    });
    expect(Object.keys(object.KafkaBatchInfo.recordsInfo['pulse_signals-2'])).toEqual([
      'firstRecordOffset',
      'lastRecordOffset',
      'firstRecordTimestamp',
      'lastRecordTimestamp',
    ]);
    expect(typeof object.payload).toBe('string');
    expect(parseKafkaEvent(JSON.parse(object.payload))).toEqual(failure.event);
  });

  it('names the object aws/lambda/<ESM-UUID>/<topic>-<partition>/YYYY/MM/DD/YYYY-MM-DDTHH.MM.SS-<UUID>, in UTC', () => {
    // Act
    const key = kafkaFailureObjectKey(
      '0b1c2d3e-0000-4000-a000-000000000001',
      'pulse_signals-2',
      new Date('2024-06-01T23:04:05.678Z'),
      'f00dfeed-0000-4000-a000-000000000002',
    );

    // Assess
    expect(key).toBe(
      'aws/lambda/0b1c2d3e-0000-4000-a000-000000000001/pulse_signals-2/2024/06/01/2024-06-01T23.04.05-f00dfeed-0000-4000-a000-000000000002',
    );
  });

  it('keeps one mapping UUID per consumer group, shaped as a UUID', () => {
    // Act / Assess
    expect(emulatedMappingUuid('pulse-kafka-consumer')).toBe(emulatedMappingUuid('pulse-kafka-consumer'));
    expect(emulatedMappingUuid('pulse-kafka-consumer')).not.toBe(emulatedMappingUuid('other'));
    expect(emulatedMappingUuid('g')).toMatch(
      /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-a[0-9a-f]{3}-[0-9a-f]{12}$/,
    );
  });

  it('puts one JSON object per discarded batch into the bucket under that key', async () => {
    // Prepare
    s3.on(PutObjectCommand).resolves({});
    const write = s3OnFailureDestination({
      s3: new S3Client({ region: 'us-east-1' }),
      bucket: 'pulse-kafka-failures',
      esmUuid: emulatedMappingUuid('g'),
      now: () => new Date('2024-06-01T00:00:00Z'),
    });

    // Act
    await write(failureFactory());

    // Assess
    expect(s3).toHaveReceivedCommandTimes(PutObjectCommand, 1);
    const input = s3.commandCalls(PutObjectCommand)[0]?.args[0].input;
    expect(input?.Bucket).toBe('pulse-kafka-failures');
    expect(input?.Key).toMatch(
      new RegExp(
        `^aws/lambda/${emulatedMappingUuid('g')}/pulse_signals-2/2024/06/01/2024-06-01T00\\.00\\.00-[0-9a-f-]{36}$`,
      ),
    );
    expect(JSON.parse(String(input?.Body)).payload).toBe(JSON.stringify(failureFactory().event));
  });

  it('an SQS destination gets the invocation record only: offsets, never the records', async () => {
    // Prepare
    sqs.on(SendMessageCommand).resolves({});
    const send = sqsOnFailureDestination({
      sqs: new SQSClient({ region: 'us-east-1' }),
      queueUrl: 'https://q',
    });

    // Act
    await send(failureFactory());

    // Assess
    const body = JSON.parse(String(sqs.commandCalls(SendMessageCommand)[0]?.args[0].input.MessageBody));
    expect(Object.keys(body)).toEqual([
      'requestContext',
      'responseContext',
      'version',
      'timestamp',
      'KafkaBatchInfo',
    ]);
    expect(JSON.stringify(body)).not.toContain(Buffer.from('{"a":1}').toString('base64'));
  });
});
