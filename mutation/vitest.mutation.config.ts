import { defineConfig } from 'vitest/config';

/** Only the mutation slice (mutation/fuzz-slice.mutation.ts), one worker. */
export default defineConfig({
  test: {
    include: ['mutation/**/*.mutation.ts'],
    testTimeout: 120_000,
    maxWorkers: 1,
  },
});
