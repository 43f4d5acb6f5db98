import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'properties/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // qemu-img processes and temporary images: two cores, so two workers.
    maxWorkers: 2,
  },
});
