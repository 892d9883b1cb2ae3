// FakeSubnetManager: an in-memory SubnetManager for backend tests. Tests push snapshots/event lists into a
// queue; the lease watch yields everything queued since the consumer's last pull as one array, exactly
// the port's contract. `push()` resolves once the consumer has handled the pull and asked for the next,
// so a test can check the kernel right after it without sleeping.

import type { NetworkConfig } from "../config/network-config.ts";
import type { IpAddr } from "../ip/addr.ts";
import type { Lease, LeaseAttrs, LeaseWatchResult } from "../lease/lease.ts";
import type { SubnetManager } from "../subnet/manager.ts";

export class FakeSubnetManager implements SubnetManager {
  /** Attributes passed to acquireLease, in call order. */
  readonly acquired: LeaseAttrs[] = [];
  private queue: LeaseWatchResult[] = [];
  private wake: (() => void) | undefined;
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly opts: {
      /** The lease handed out by acquireLease (its attrs are replaced by the ones asked for). */
      lease: Lease;
      config?: NetworkConfig;
      storedMacs?: { v4?: string; v6?: string };
    },
  ) {}

  name(): string {
    return "Fake Subnet Manager";
  }

  getNetworkConfig(): Promise<NetworkConfig> {
    if (this.opts.config === undefined) return Promise.reject(new Error("No network config in the fake"));
    return Promise.resolve(this.opts.config);
  }

  acquireLease(attrs: LeaseAttrs): Promise<Lease> {
    this.acquired.push(attrs);
    return Promise.resolve({ ...this.opts.lease, attrs });
  }

  completeLease(_lease: Lease, signal: AbortSignal): Promise<"interrupted" | "revoked"> {
    return new Promise((resolve) =>
      signal.addEventListener("abort", () => resolve("interrupted"), { once: true }),
    );
  }

  getStoredMacAddresses(): Promise<{ v4?: string; v6?: string }> {
    return Promise.resolve(this.opts.storedMacs ?? {});
  }

  getStoredPublicIp(): Promise<{ v4?: IpAddr; v6?: IpAddr }> {
    return Promise.resolve({});
  }

  async *watchLeases(signal: AbortSignal): AsyncIterable<LeaseWatchResult[]> {
    while (!signal.aborted) {
      if (this.queue.length === 0) {
        for (const w of this.idleWaiters.splice(0)) w();
        await new Promise<void>((resolve) => {
          this.wake = resolve;
          signal.addEventListener("abort", () => resolve(), { once: true });
        });
        this.wake = undefined;
        continue;
      }
      yield this.queue.splice(0);
    }
  }

  /** Queues results for one pull and resolves once the consumer has handled them. */
  push(...results: LeaseWatchResult[]): Promise<void> {
    const idle = new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    this.queue.push(...results);
    this.wake?.();
    return idle;
  }
}
