import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Integration tests start real daemons and sockets; two workers match CI's two cores.
    maxWorkers: 2,
    reporters: ['default'],
    // The daemons the tests spawn run src/, not a dist/ that could be built from other sources.
    env: { EDGEFERRY_FROM_SRC: '1' },
  },
});
