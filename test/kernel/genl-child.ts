// Child of genl-netns.test.ts, run inside a test namespace: resolves two generic netlink families (names
// are at most 15 characters, GENL_NAMSIZ; a longer one is EINVAL, not ENOENT).

import * as wgc from "../../src/kernel/netlink/wireguard-codec.ts";
import { NetlinkSocket } from "../../src/kernel/netlink/socket.ts";
import { KernelError } from "../../src/kernel/ports.ts";

const sock = new NetlinkSocket({ protocol: wgc.NETLINK_GENERIC, recvTimeoutMs: 5000 });
try {
  const nlctrl = wgc.decodeFamilyId(
    sock.query(wgc.GENL_ID_CTRL, wgc.encodeGetFamily("nlctrl"), "nlctrl").body,
  );
  let missing = "resolved";
  try {
    sock.query(wgc.GENL_ID_CTRL, wgc.encodeGetFamily("fts-nofamily"), "missing");
  } catch (err) {
    missing = err instanceof KernelError ? err.errno : String(err);
  }
  console.log(JSON.stringify({ nlctrl, missing }));
} finally {
  sock.close();
}
