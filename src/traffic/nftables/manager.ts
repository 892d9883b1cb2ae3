// NftablesManager: flannel's masquerade and forward rules as nftables tables `ip flannel-ipv4` and
// `ip6 flannel-ipv6` (spec §6.2), written with `nft -f -`.
//
// Design notes:
// - Every change is one nft transaction (add chain + flush chain + add rules), so the chain is never seen
//   half-filled and re-running it is harmless. That is also why there is no "recycle old rules" step: the flush
//   removes rules of a previous network or subnet.
// - Upstream has no resync in nftables mode (spec A6); nor do we, yet. Our tables are private to flannel, so
//   other tools do not rewrite them the way iptables-based tools rewrite the shared built-in chains.
// - `fully-random` support is probed once with `nft --check` (nothing is changed by the probe).

import { errorMessage, FlannelError } from "../../errors.ts";
import type { CommandResult, CommandRunner } from "../../kernel/command.ts";
import type { Logger } from "../../log/logger.ts";
import type { ForwardRulesOpts, MasqRulesOpts, TrafficManager } from "../manager.ts";
import {
  deleteTableScript,
  forwardScript,
  fullyRandomProbeScript,
  masqScript,
  tableName,
  tableScript,
} from "./script.ts";

export interface NftablesManagerOptions {
  commands: CommandRunner;
  logger: Logger;
  /** `--ip-masq-fully-random-disable`: plain `masquerade`. */
  randomFullyDisable?: boolean;
}

const NFT_MISSING = 'exec: "nft": executable file not found in $PATH';

export class NftablesManager implements TrafficManager {
  private readonly log: Logger;
  private fullyRandom: Promise<boolean> | undefined;

  constructor(private readonly opts: NftablesManagerOptions) {
    this.log = opts.logger;
  }

  async init(_signal: AbortSignal): Promise<void> {
    for (const family of [4, 6] as const) {
      let res: CommandResult;
      try {
        res = await this.nft(tableScript(family));
      } catch (err) {
        throw new FlannelError("NFT_MISSING", `no nftables support: ${errorMessage(err)}`, {
          hint: "Install nftables (the nft command) or set EnableNFTables to false in net-conf.json",
          cause: err,
        });
      }
      if (res.code !== 0) {
        throw new FlannelError(
          "NFT",
          `nftables: couldn't initialise table ${tableName(family)}: ${res.stderr.trim()}`,
        );
      }
    }
  }

  async setupAndEnsureMasqRules(opts: MasqRulesOpts): Promise<void> {
    const sets = [
      { family: 4 as const, network: opts.network, subnet: opts.subnet, name: "ipv4" },
      { family: 6 as const, network: opts.ipv6Network, subnet: opts.ipv6Subnet, name: "ipv6" },
    ];
    for (const s of sets) {
      if (s.network === null || s.subnet === null) continue;
      this.log.info(`nftables: setting up masking rules (${s.name})`);
      const fullyRandom = this.opts.randomFullyDisable !== true && (await this.probeFullyRandom());
      const res = await this.nft(masqScript({ network: s.network, subnet: s.subnet, fullyRandom }));
      if (res.code !== 0) {
        throw new FlannelError("NFT", `nftables: couldn't setup masq rules: ${res.stderr.trim()}`);
      }
    }
  }

  async setupAndEnsureForwardRules(opts: ForwardRulesOpts): Promise<void> {
    const sets = [
      { network: opts.network, suffix: "" },
      { network: opts.ipv6Network, suffix: " (ipv6)" },
    ];
    for (const s of sets) {
      if (s.network === null) continue;
      this.log.info(`Changing default FORWARD chain policy to ACCEPT${s.suffix}`);
      try {
        const res = await this.nft(forwardScript(s.network));
        if (res.code !== 0) throw new Error(res.stderr.trim());
      } catch (err) {
        // Upstream only logs this one: forwarding may well be allowed by the host's own policy.
        this.log.error(`nftables: couldn't setup forward rules${s.suffix}: ${errorMessage(err)}`);
      }
    }
  }

  async cleanUp(): Promise<void> {
    for (const family of [4, 6] as const) {
      let res: CommandResult;
      try {
        res = await this.nft(deleteTableScript(family));
      } catch (err) {
        // Without nft nobody can have created our tables: nothing to clean.
        this.log.v(2)?.info(`nftables: nothing to clean up: ${errorMessage(err)}`);
        return;
      }
      if (res.code !== 0) {
        throw new FlannelError(
          "NFT",
          `nftables${family === 6 ? " (ipv6)" : ""}: couldn't delete table: ${res.stderr.trim()}`,
        );
      }
    }
  }

  wait(): Promise<void> {
    return Promise.resolve();
  }

  private probeFullyRandom(): Promise<boolean> {
    this.fullyRandom ??= (async () => {
      const res = await this.nft(fullyRandomProbeScript(), true);
      if (res.code !== 0) {
        this.log.warn("nftables: random fully unsupported");
        return false;
      }
      return true;
    })();
    return this.fullyRandom;
  }

  /** `nft [--check] -f -` with `script` on stdin; rejects only when nft cannot be started. */
  private async nft(script: string, check = false): Promise<CommandResult> {
    this.log.v(6)?.info(`running nft -f - with:\n${script}`);
    try {
      return await this.opts.commands.run("nft", [...(check ? ["--check"] : []), "-f", "-"], {
        stdin: script,
      });
    } catch (err) {
      if ((err as { code?: unknown } | null)?.code === "ENOENT") throw new Error(NFT_MISSING);
      throw err;
    }
  }
}
