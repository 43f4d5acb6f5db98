/**
 * The shape every command shares: `check` resolves the command's seed against the model (pure:
 * no legal arguments, no run), `run` resolves again, performs the steps on the implementation and
 * the model and asserts (runner/execute-step.ts), and `toString` shows the steps of the latest
 * run in qemu-io / qemu-img syntax.
 */
import type fc from 'fast-check';
import type { DiskModel } from '../model/disk-model.ts';
import type { RunContext } from '../runner/run-context.ts';
import { executeStep } from '../runner/execute-step.ts';
import { formatStep, type Step } from '../steps.ts';

export abstract class StepCommand implements fc.AsyncCommand<DiskModel, RunContext> {
  private lastSteps: Step[] | undefined;

  /** The steps this command means on this model, or undefined when it has no legal form now. */
  protected abstract resolve(model: DiskModel): Step[] | undefined;
  /** What the command is before it meets a model. */
  protected abstract describeSeed(): string;

  /** The steps this command means on this model (public, for motifs that compose commands). */
  stepsFor(model: DiskModel): Step[] | undefined {
    return this.resolve(model);
  }

  check(model: Readonly<DiskModel>): boolean {
    return this.resolve(model as DiskModel) !== undefined;
  }

  async run(model: DiskModel, ctx: RunContext): Promise<void> {
    const steps = this.resolve(model);
    if (!steps) throw new Error(`harness: ${this.describeSeed()} ran without a legal form`);
    this.lastSteps = steps;
    for (const step of steps) await executeStep(ctx, step);
  }

  toString(): string {
    return this.lastSteps ? this.lastSteps.map(formatStep).join('; ') : this.describeSeed();
  }
}
