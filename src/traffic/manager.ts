// The port through which the daemon installs masquerade and forward rules (spec §6). Two implementations:
// IptablesManager (iptables/ip6tables + iptables-restore) and NftablesManager (nft -f). The daemon picks one
// from `EnableNFTables` and calls `cleanUp()` of the *other* at startup (upstream ≥ v0.27.0); nothing is removed
// at exit, so a restart does not interrupt flows.

import type { IpNet } from "../ip/net.ts";

export interface MasqRulesOpts {
  /** Cluster IPv4 network (`Network`); null when IPv4 is disabled. */
  network: IpNet | null;
  /** This node's IPv4 lease subnet; null when IPv4 is disabled. */
  subnet: IpNet | null;
  /** `FLANNEL_NETWORK` from the subnet file before it was rewritten (rules of a changed network are recycled). */
  prevNetwork: IpNet | null;
  /** `FLANNEL_SUBNET` from the old subnet file. */
  prevSubnet: IpNet | null;
  ipv6Network: IpNet | null;
  ipv6Subnet: IpNet | null;
  prevIpv6Network: IpNet | null;
  prevIpv6Subnet: IpNet | null;
  /** Aborting it ends the resync loop started by the call. */
  signal: AbortSignal;
  /** See {@link ForwardRulesOpts.background}. */
  background?: boolean;
}

export interface ForwardRulesOpts {
  network: IpNet | null;
  ipv6Network: IpNet | null;
  signal: AbortSignal;
  /**
   * iptables only: resolve at once and create (or flush) the flannel chain and bootstrap its rules in the
   * background, as upstream does with the rules in a goroutine, so that the daemon writes subnet.env and
   * starts the backend without waiting for any iptables process (upstream waits for the chain's). nftables installs its rules in one transaction before
   * resolving either way (as upstream does).
   */
  background?: boolean;
}

/** Which address families a network has (`EnableIPv4`, `EnableIPv6`). */
export interface TrafficFamilies {
  ipv4: boolean;
  ipv6: boolean;
}

export interface TrafficManager {
  /**
   * Prepares the manager: probes tool versions and features (iptables `--wait`/`--random-fully`, nft
   * fully-random) and, for nftables, creates the flannel tables. Call once before the setup methods.
   * `families`: the address families the network has (default both); iptables probes only their tools now,
   * and another family's tool when a setup first needs it.
   */
  init(signal: AbortSignal, families?: TrafficFamilies): Promise<void>;

  /**
   * Installs the masquerade rules for each family whose network and subnet are both non-null, after deleting
   * rules left from a previous, different network/subnet. Resolves when the first installation is done (with
   * `background`, iptables: when the old rules are gone), then
   * keeps the rules in place (iptables: every `resyncMs`) until `signal` aborts. Rejects when the old rules
   * cannot be removed (iptables) or the rules cannot be installed (nftables); the daemon then exits with
   * `Failed to setup masq rules, <err>`. An iptables installation failure is only logged, as upstream, and
   * retried by the resync loop.
   */
  setupAndEnsureMasqRules(opts: MasqRulesOpts): Promise<void>;

  /**
   * Installs the forward-accept rules for each non-null network and keeps them in place like the masquerade
   * rules. Never rejects: failures are logged (as upstream) and retried by the resync loop.
   */
  setupAndEnsureForwardRules(opts: ForwardRulesOpts): Promise<void>;

  /**
   * Removes every rule, chain or table this mode installs, for both families. Idempotent; succeeds when
   * nothing is installed. Used by the daemon on the mode it is *not* running.
   */
  cleanUp(): Promise<void>;

  /** Resolves when every resync loop started by the setup methods has ended (after their signal aborted). */
  wait(): Promise<void>;
}
