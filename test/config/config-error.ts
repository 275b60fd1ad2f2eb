import { expect } from 'vitest';
import { parseConfig } from '../../src/config/load.ts';
import { ConfigError } from '../../src/core/errors.ts';

/** The message of the ConfigError that parsing `raw` throws; fails the test when none is thrown. */
export function configError(raw: unknown): string {
  try {
    parseConfig(raw, {});
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).message;
  }
  throw new Error('expected a ConfigError');
}
