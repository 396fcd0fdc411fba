import { describe, expect, it } from 'vitest';
import { kafkaGroupIdOf } from '../../../../local/runtime/runtime.ts';

describe('kafkaGroupIdOf (the offline Kafka event source consumer group)', () => {
  it('joins the configured consumer group, as the stack does with kafka.consumerGroupId', () => {
    // Prepare
    const state = { prefix: 'pulse', options: { kafkaConsumerGroupId: 'team/pulse:signals' } };
    // Act
    const group = kafkaGroupIdOf(state);
    // Assess
    expect(group).toBe('team/pulse:signals');
  });

  it('without one, keeps one group per offline run (a mapping UUID of its own)', () => {
    // Prepare
    const state = { prefix: 'pulse-a1' };
    // Act
    const group = kafkaGroupIdOf(state);
    // Assess
    expect(group).toBe('pulse-a1-kafka-consumer');
  });
});
