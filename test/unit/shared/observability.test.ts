import { afterEach, describe, expect, it, vi } from 'vitest';
import { createObservability } from '#shared/observability.ts';

/** What the function writes to stdout and stderr while `act` runs, line by line. */
function output(act: () => void): string[] {
  const lines: string[] = [];
  const capture = (chunk: string | Uint8Array) => {
    lines.push(...String(chunk).split('\n').filter(Boolean));
    return true;
  };
  const out = vi.spyOn(process.stdout, 'write').mockImplementation(capture);
  const err = vi.spyOn(process.stderr, 'write').mockImplementation(capture);
  try {
    act();
  } finally {
    out.mockRestore();
    err.mockRestore();
  }
  return lines;
}

describe('createObservability', () => {
  afterEach(() => vi.unstubAllEnvs());

  it("logs Metrics' warnings through the function's logger, and its no-metrics notice only at DEBUG", () => {
    // Prepare
    vi.stubEnv('POWERTOOLS_LOG_LEVEL', 'INFO');
    vi.stubEnv('POWERTOOLS_DEV', 'false');
    const { metrics } = createObservability('test-service');
    // Act: an invocation that published nothing; then a dimension CloudWatch would refuse.
    const quiet = output(() => metrics.publishStoredMetrics());
    const warned = output(() => metrics.addDimension('', 'x'));
    // Assess
    expect(quiet).toEqual([]);
    expect(warned).toHaveLength(1);
    expect(JSON.parse(warned[0] ?? '')).toMatchObject({
      level: 'WARN',
      service: 'test-service',
      message: expect.stringContaining("doesn't meet the requirements"),
    });
  });

  it('shows the no-metrics notice as a structured DEBUG line when the function logs at DEBUG', () => {
    // Prepare
    vi.stubEnv('POWERTOOLS_LOG_LEVEL', 'DEBUG');
    vi.stubEnv('POWERTOOLS_DEV', 'false');
    const { metrics } = createObservability('test-service');
    // Act
    const lines = output(() => metrics.publishStoredMetrics());
    // Assess
    expect(lines.map((l) => JSON.parse(l))).toEqual([
      expect.objectContaining({ level: 'DEBUG', message: expect.stringMatching(/^No application metrics/) }),
    ]);
  });
});
