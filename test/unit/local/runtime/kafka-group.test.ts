import { describe, expect, it } from 'vitest';
import { kafkaGroupIdOf, kafkaTopicsOfState } from '../../../../local/runtime/runtime.ts';

describe('the offline Kafka event source: topics and consumer groups', () => {
  it('joins the configured consumer group, as the stack does with kafka.consumerGroupId', () => {
    // Prepare
    const state = { prefix: 'pulse', options: { kafkaConsumerGroupId: 'team/pulse:signals' } };
    // Act
    const group = kafkaGroupIdOf(state, 'pulse_signals');
    // Assess
    expect(group).toBe('team/pulse:signals');
  });

  it('without one, keeps one group per offline run (a mapping UUID of its own)', () => {
    // Prepare
    const state = { prefix: 'pulse-a1' };
    // Act
    const group = kafkaGroupIdOf(state, 'pulse_signals');
    // Assess
    expect(group).toBe('pulse-a1-kafka-consumer');
  });

  it('reads every configured topic with a mapping and a group each, named as the stack names them', () => {
    // Prepare
    const grouped = { prefix: 'p', options: { kafkaConsumerGroupId: 'g', kafkaTopics: ['a', 'b'] } };
    const ungrouped = { prefix: 'p', options: { kafkaTopics: ['a', 'b'] } };
    // Act
    const topics = kafkaTopicsOfState(grouped, 'pulse_signals');
    const groups = topics.map((t) => kafkaGroupIdOf(grouped, t, topics));
    const runGroups = topics.map((t) => kafkaGroupIdOf(ungrouped, t, topics));
    // Assess
    expect(topics).toEqual(['a', 'b']);
    expect(kafkaTopicsOfState({}, 'pulse_signals')).toEqual(['pulse_signals']);
    expect(groups).toEqual(['g.a', 'g.b']);
    expect(runGroups).toEqual(['p-kafka-consumer.a', 'p-kafka-consumer.b']);
  });
});
