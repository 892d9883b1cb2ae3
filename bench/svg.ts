// The convergence plot: time until the kernel matched, against the number of leases, one line per
// scenario (vxlan), on log–log axes. Plain SVG text, no dependencies.

import { groupScenarios, type Scenario } from "./control.ts";

const COLORS: Record<Scenario["name"], string> = {
  cold: "#1f77b4",
  batched: "#2ca02c",
  "batched-removal": "#98df8a",
  streamed: "#d62728",
  "streamed-removal": "#ff9896",
};

export function convergenceSvg(scenarios: readonly Scenario[], date: string, commit: string): string {
  // Repeated runs are drawn as their median.
  const pts = groupScenarios(scenarios)
    .map((g) => g.median)
    .filter((s) => s.backend === "vxlan" && s.totalMs > 0 && !s.timedOut);
  const W = 640;
  const H = 400;
  const L = 70;
  const R = 170;
  const T = 40;
  const B = 50;
  const xs = pts.map((p) => p.leases);
  const ys = pts.map((p) => p.totalMs);
  const lx0 = Math.floor(Math.log10(Math.min(...xs, 100)));
  const lx1 = Math.ceil(Math.log10(Math.max(...xs, 1000)));
  const ly0 = Math.floor(Math.log10(Math.max(1, Math.min(...ys, 10))));
  const ly1 = Math.ceil(Math.log10(Math.max(...ys, 1000)));
  const x = (v: number): number => L + ((Math.log10(v) - lx0) / (lx1 - lx0 || 1)) * (W - L - R);
  const y = (v: number): number => H - B - ((Math.log10(v) - ly0) / (ly1 - ly0 || 1)) * (H - T - B);
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${L}" y="20" font-size="14">flanneld convergence (vxlan) — ${date.slice(0, 10)}, ${commit.slice(0, 12)}</text>`,
  ];
  for (let e = lx0; e <= lx1; e++) {
    const px = x(10 ** e);
    out.push(`<line x1="${px}" y1="${T}" x2="${px}" y2="${H - B}" stroke="#ddd"/>`);
    out.push(
      `<text x="${px}" y="${H - B + 16}" text-anchor="middle">${(10 ** e).toLocaleString("en")}</text>`,
    );
  }
  for (let e = ly0; e <= ly1; e++) {
    const py = y(10 ** e);
    const label = 10 ** e >= 1000 ? `${10 ** (e - 3)} s` : `${10 ** e} ms`;
    out.push(`<line x1="${L}" y1="${py}" x2="${W - R}" y2="${py}" stroke="#ddd"/>`);
    out.push(`<text x="${L - 6}" y="${py + 4}" text-anchor="end">${label}</text>`);
  }
  out.push(`<text x="${(L + W - R) / 2}" y="${H - 12}" text-anchor="middle">leases</text>`);
  out.push(
    `<text x="16" y="${(T + H - B) / 2}" transform="rotate(-90 16 ${(T + H - B) / 2})" text-anchor="middle">time until the kernel matched</text>`,
  );
  let row = 0;
  for (const name of Object.keys(COLORS) as Scenario["name"][]) {
    const line = pts.filter((p) => p.name === name).sort((a, b) => a.leases - b.leases);
    if (line.length === 0) continue;
    const c = COLORS[name];
    out.push(
      `<polyline fill="none" stroke="${c}" stroke-width="2" points="${line.map((p) => `${x(p.leases).toFixed(1)},${y(p.totalMs).toFixed(1)}`).join(" ")}"/>`,
    );
    for (const p of line)
      out.push(`<circle cx="${x(p.leases).toFixed(1)}" cy="${y(p.totalMs).toFixed(1)}" r="3" fill="${c}"/>`);
    const ly = T + 10 + row * 18;
    out.push(
      `<line x1="${W - R + 12}" y1="${ly}" x2="${W - R + 32}" y2="${ly}" stroke="${c}" stroke-width="2"/>`,
    );
    out.push(`<text x="${W - R + 38}" y="${ly + 4}">${name}</text>`);
    row++;
  }
  out.push("</svg>");
  return `${out.join("\n")}\n`;
}
