// The QMP route: PLAN (gather the VM's state, compute the commands) then APPLY them one by
// one. An attach that fails midway removes again what it added, newest first, so a VM is
// left as it was found. Calls on one route run one at a time.
import { UsageError } from '../errors.js';
import { Mutex } from '../io/index.js';
import { QmpExecuteError } from '../qmp/index.js';
import { HotplugError, HotplugStepError, HotplugTimeoutError } from './errors.js';
import { chardevStep, planAttach, planDetach, removeStep, type AttachPlan, type VmState } from './plan.js';
import { gatherState, quickAttachState, type QmpPort } from './state.js';
import {
  checkSocketPath,
  DEFAULT_PORT_NAME,
  offloadIds,
  type AttachResult,
  type AttachSpec,
  type DetachResult,
  type DetachSpec,
  type HotplugStep,
  type OffloadDeviceRoute,
} from './types.js';

export interface QmpRouteOptions {
  /** How long to wait for DEVICE_DELETED after each device_del; default 10 s. */
  unplugTimeoutMs?: number;
}

export class QmpHotplugRoute implements OffloadDeviceRoute {
  readonly #qmp: QmpPort;
  readonly #unplugTimeoutMs: number;
  /** attach/detach run one at a time: each plans from the state it reads. */
  readonly #calls = new Mutex();

  /** `qmp` is a connected QmpClient (or anything with its execute/listen). */
  constructor(qmp: QmpPort, options: QmpRouteOptions = {}) {
    this.#qmp = qmp;
    this.#unplugTimeoutMs = options.unplugTimeoutMs ?? 10_000;
  }

  /** What attach would do, without doing it. */
  async planAttach(spec: AttachSpec): Promise<AttachPlan & { state: VmState }> {
    const { portName, reconnect } = checkAttachSpec(spec);
    const ids = offloadIds(portName);
    const state = await this.#gather(spec.vm, ids);
    return { ...planAttach(spec.vm, state, ids, portName, spec.socketPath, reconnect, this.#qmp.greeting?.version.qemu), state };
  }

  attach(spec: AttachSpec): Promise<AttachResult> {
    return this.#calls.run(async () => {
      const started = Date.now();
      const portName = spec.portName ?? DEFAULT_PORT_NAME;
      const ids = offloadIds(portName);
      const { reconnect } = checkAttachSpec(spec);
      // The usual first attach takes the round trips of the bare command sequence: our chardev
      // is added in the same round as the one read that checks the VM (the peripheral list;
      // a refused chardev-add means ours exists), then the port goes onto the bus found.
      // Anything else (our chardev or port already there, no controller with an id, a failed
      // step) undoes what this did and lets the full state decide.
      let attached: { plan: AttachPlan; done: HotplugStep[] } | undefined;
      const early = chardevStep(ids, spec.socketPath, reconnect, this.#qmp.greeting?.version.qemu);
      const [quick, added] = await Promise.all([
        this.#quickState(spec.vm, ids).then(
          (state) => ({ state }),
          (error: unknown) => ({ error }),
        ),
        this.#qmp.execute(early.command, early.arguments).then(
          () => true,
          () => false,
        ),
      ]);
      // Undone by a failed full plan too, when that plan builds on it (no controller yet).
      let keptEarly: HotplugStep[] = [];
      if ('error' in quick || quick.state === undefined) {
        if (added) await this.#apply(spec.vm, removeStep('remove-chardev', ids.chardev));
        if ('error' in quick) throw quick.error;
      } else if (quick.state === 'no-controller') {
        if (added) keptEarly = [early];
      } else if (added) {
        const plan = planAttach(spec.vm, quick.state, ids, portName, spec.socketPath, reconnect, this.#qmp.greeting?.version.qemu);
        const rest = plan.steps.filter((step) => step.kind !== 'add-chardev');
        attached = await this.#applyAll(spec.vm, rest, [early]).then(
          (done) => ({ plan, done }),
          () => undefined,
        );
      }
      if (attached === undefined) {
        let plan: AttachPlan;
        try {
          plan = await this.planAttach(spec);
        } catch (err) {
          for (const step of keptEarly) await this.#apply(spec.vm, removeStep('remove-chardev', step.id)).catch(() => {});
          throw err;
        }
        attached = { plan, done: await this.#applyAll(spec.vm, plan.steps, keptEarly) };
      }
      const { plan, done } = attached;
      return {
        vm: spec.vm,
        portName,
        chardevId: ids.chardev,
        portId: ids.port,
        bus: plan.bus,
        steps: done,
        alreadyAttached: done.length === 0,
        elapsedMs: Date.now() - started,
      };
    });
  }

  detach(spec: DetachSpec): Promise<DetachResult> {
    return this.#calls.run(async () => {
      const started = Date.now();
      const portName = spec.portName ?? DEFAULT_PORT_NAME;
      const ids = offloadIds(portName);
      const steps = planDetach(await this.#gather(spec.vm, ids), ids);
      for (const step of steps) {
        try {
          await this.#apply(spec.vm, step);
        } catch (err) {
          throw err instanceof HotplugError ? err : new HotplugStepError(spec.vm, step.summary, err);
        }
      }
      return { vm: spec.vm, portName, steps, alreadyDetached: steps.length === 0, elapsedMs: Date.now() - started };
    });
  }

  /** Apply the steps in order; on a failure undo those done and throw what failed. */
  async #applyAll(vm: string, steps: readonly HotplugStep[], already: readonly HotplugStep[] = []): Promise<HotplugStep[]> {
    const done: HotplugStep[] = [...already];
    for (const step of steps) {
      try {
        await this.#apply(vm, step);
      } catch (err) {
        throw await this.#rollBack(vm, step, err, done);
      }
      done.push(step);
    }
    return done;
  }

  async #quickState(vm: string, ids: ReturnType<typeof offloadIds>): Promise<VmState | 'no-controller' | undefined> {
    try {
      return await quickAttachState(this.#qmp, ids);
    } catch (err) {
      throw new HotplugStepError(vm, 'reading the VM’s devices and chardevs', err);
    }
  }

  async #gather(vm: string, ids: ReturnType<typeof offloadIds>): Promise<VmState> {
    try {
      return await gatherState(this.#qmp, ids);
    } catch (err) {
      throw new HotplugStepError(vm, 'reading the VM’s devices and chardevs', err);
    }
  }

  async #apply(vm: string, step: HotplugStep): Promise<void> {
    if (step.kind === 'remove-port' || step.kind === 'remove-controller') return this.#deleteDevice(vm, step.id);
    await this.#qmp.execute(step.command, step.arguments);
  }

  /**
   * device_del, then wait for DEVICE_DELETED of that id (armed before the command, so it cannot
   * be missed). A device already gone counts as removed; one whose unplug is already pending
   * (an earlier call timed out) is waited for again.
   */
  async #deleteDevice(vm: string, id: string): Promise<void> {
    const listener = this.#qmp.listen({ names: ['DEVICE_DELETED'], predicate: (e) => e.data['device'] === id || e.data['path'] === `/machine/peripheral/${id}` });
    let timer: NodeJS.Timeout | undefined;
    try {
      try {
        await this.#qmp.execute('device_del', { id });
      } catch (err) {
        if (err instanceof QmpExecuteError && err.errorClass === 'DeviceNotFound') return;
        if (!(err instanceof QmpExecuteError && /already in the process of unplug/i.test(err.description))) throw err;
      }
      const timeout = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), this.#unplugTimeoutMs)));
      const outcome = await Promise.race([listener.next(), timeout]);
      if (outcome === 'timeout') throw new HotplugTimeoutError(vm, id, this.#unplugTimeoutMs);
      if (outcome.done) throw new Error(`the QMP session ended while waiting for DEVICE_DELETED of ${id}`);
    } finally {
      clearTimeout(timer);
      listener.close();
    }
  }

  /** Undo `done` newest first; the error to throw says what failed and what was undone. */
  async #rollBack(vm: string, failed: HotplugStep, cause: unknown, done: readonly HotplugStep[]): Promise<HotplugError> {
    const error = cause instanceof HotplugStepError ? cause : new HotplugStepError(vm, failed.summary, cause);
    const undone: string[] = [];
    const problems: string[] = [];
    for (const step of [...done].reverse()) {
      const undo = removeStep(step.kind === 'add-port' ? 'remove-port' : step.kind === 'add-controller' ? 'remove-controller' : 'remove-chardev', step.id);
      try {
        await this.#apply(vm, undo);
        undone.push(undo.summary);
      } catch (err) {
        problems.push(`${undo.summary}: ${err instanceof Error ? err.message : String(err)}`);
        // Later undos depend on this one (a chardev in use cannot be removed): stop here.
        break;
      }
    }
    if (undone.length > 0) error.rolledBack = undone.join('; ');
    if (problems.length > 0) error.rollbackProblem = problems.join('; ');
    if (undone.length > 0 || problems.length > 0) {
      error.message += ` (rolled back: ${undone.join('; ') || 'nothing'}${problems.length > 0 ? `; could not undo: ${problems.join('; ')}` : ''})`;
    }
    return error;
  }
}

function checkAttachSpec(spec: AttachSpec): { portName: string; reconnect: number } {
  checkSocketPath(spec.socketPath);
  const reconnect = spec.reconnectSeconds ?? 1;
  if (!Number.isSafeInteger(reconnect) || reconnect < 1) throw new UsageError(`reconnect interval must be a whole number of seconds ≥ 1, got ${reconnect}`, '--reconnect');
  return { portName: spec.portName ?? DEFAULT_PORT_NAME, reconnect };
}

export type { QmpPort } from './state.js';
