import { defineConfig } from 'vitest/config';

/** Only the mutation slice (mutation/fuzz-slice.mutation.test.ts), one worker. */
export default defineConfig({
  test: {
    include: ['mutation/**/*.mutation.test.ts'],
    testTimeout: 120_000,
    maxWorkers: 1,
  },
});
