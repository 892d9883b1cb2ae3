import assert from "node:assert/strict";
import { test } from "node:test";
import { IpAddr } from "../../ip/addr.ts";
import { IpNet } from "../../ip/net.ts";
import { freeSubnets } from "./manager.ts";
import { seededRandom } from "../../../test/helpers/random.ts";

/** The definition: scan every taken subnet for each candidate. */
function freeSubnetsByScan(min: IpAddr, max: IpAddr, prefixLen: number, taken: readonly (IpNet | null)[]) {
  const out: IpNet[] = [];
  const used = taken.filter((t): t is IpNet => t !== null && t.family === min.family);
  for (let sn = IpNet.of(min, prefixLen); sn.ip.compare(max) <= 0 && out.length < 100; sn = sn.next()) {
    const cand = sn;
    if (!used.some((t) => cand.overlaps(t))) out.push(cand);
    if (sn.last.value === (1n << BigInt(sn.ip.bits)) - 1n) break;
  }
  return out.map(String);
}

test("freeSubnets equals a scan of every taken subnet, with nested, mixed-size and foreign-family leases", () => {
  const rnd = seededRandom(7);
  for (let round = 0; round < 300; round++) {
    const taken: (IpNet | null)[] = [null, IpNet.parse("fd00::/64")];
    for (let i = 0, n = rnd(400); i < n; i++) {
      // Mostly /24s near the start, some wider (/20, /16) and narrower (/28) ones that nest or straddle.
      const len = [24, 24, 24, 20, 16, 28][rnd(6)] ?? 24;
      taken.push(IpNet.of(IpAddr.parse(`10.${rnd(3)}.${rnd(256)}.${rnd(256)}`), len));
    }
    const min = IpAddr.parse(`10.0.${rnd(4)}.0`);
    const max = IpAddr.parse(`10.${rnd(3)}.255.0`);
    assert.deepEqual(
      freeSubnets(min, max, 24, taken).map(String),
      freeSubnetsByScan(min, max, 24, taken),
      `round ${round}`,
    );
  }
});

test("the first lease watch starts from the acquisition's listing: its snapshot, then every later change", async (t) => {
  const { startEtcd } = await import("../../../test/helpers/etcd.ts");
  const { waitFor } = await import("../../../test/helpers/netns.ts");
  const { MemoryLogger } = await import("../../log/logger.ts");
  const { EtcdSubnetManager } = await import("./manager.ts");
  const etcd = await startEtcd();
  t.after(() => etcd.stop());
  const prefix = "/seed/network";
  const put = (sn: string, ip: string): void =>
    void etcd.etcdctl([
      "put",
      `${prefix}/subnets/${sn.replace("/", "-")}`,
      `{"PublicIP":"${ip}","PublicIPv6":null,"BackendType":"vxlan"}`,
    ]);
  etcd.etcdctl(["put", `${prefix}/config`, '{ "Network": "10.3.0.0/16", "SubnetMin": "10.3.1.0" }']);
  put("10.3.100.0/24", "2.2.2.2");
  const m = new EtcdSubnetManager({
    endpoints: [etcd.endpoint],
    prefix,
    prevSubnet: null,
    prevIpv6Subnet: null,
    renewMarginMin: 60,
    logger: new MemoryLogger(),
  });
  const ac = new AbortController();
  try {
    const own = await m.acquireLease(
      { publicIp: IpAddr.parse("1.1.1.1"), publicIpv6: null, backendType: "vxlan" },
      ac.signal,
    );
    // Written after the acquisition listed the leases, before the watch starts: must come as an event.
    put("10.3.101.0/24", "3.3.3.3");
    const got: string[] = [];
    const done = (async () => {
      for await (const batch of m.watchLeases(ac.signal)) {
        for (const r of batch) {
          if ("snapshot" in r) got.push(`snapshot ${r.snapshot.map((l) => String(l.subnet)).join(",")}`);
          else for (const e of r.events) got.push(`${e.type} ${String(e.lease.subnet)}`);
        }
      }
    })();
    await waitFor(() => got.includes("added 10.3.101.0/24"), 10_000, "the event of the later lease");
    // The snapshot is the acquisition's listing (without our own lease, created after it); our own lease
    // and the later peer follow as events, in etcd's order.
    assert.deepEqual(got, ["snapshot 10.3.100.0/24", `added ${String(own.subnet)}`, "added 10.3.101.0/24"]);
    ac.abort();
    await done;
  } finally {
    ac.abort();
    m.close();
  }
});
