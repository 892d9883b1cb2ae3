// A tiny Prometheus registry: counters, gauges and histograms with labels, rendered in the text exposition
// format 0.0.4 (what every Prometheus scraper reads). No dependency: flanneld needs a handful of series, and
// prom-client would pull in more code than this whole module.
//
// Design notes
// - A metric is created once with fixed label names; each distinct label-value tuple is one series, kept in
//   a Map keyed by the joined values. flanneld's label values come from small closed sets (op names, event
//   types), so the number of series stays bounded.
// - Rendering is deterministic (metrics in registration order, series sorted), so tests compare whole text.
// - `labels()` binds a series once for a hot path (every kernel write, every lease event): its `inc` and
//   `observe` then cost an addition, not a check of the labels and a string key per call. A bound series
//   appears in the output from its first increment, as one counted through `inc(labels)` does.

export type Labels = Readonly<Record<string, string>>;

/** One series of a counter, its labels checked once (`Counter.labels`). */
export interface CounterSeries {
  /** Adds `n` (default 1, must not be negative). */
  inc(n?: number): void;
}

/** One series of a histogram, its labels checked once (`Histogram.labels`). */
export interface HistogramSeries {
  observe(value: number): void;
}

interface Series {
  labels: string[];
  value: unknown;
}

function escapeHelp(s: string): string {
  return s.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

function escapeLabelValue(s: string): string {
  return s.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

/** Prometheus number formatting: integers plainly, +Inf/-Inf/NaN spelled as the format wants. */
export function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

const NAME_RE = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_RE = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

abstract class Metric {
  protected readonly series = new Map<string, Series>();

  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[],
  ) {
    if (!NAME_RE.test(name)) throw new Error(`Invalid metric name ${JSON.stringify(name)}`);
    for (const l of labelNames) {
      if (!LABEL_RE.test(l) || l.startsWith("__")) {
        throw new Error(`Invalid label name ${JSON.stringify(l)} for metric ${name}`);
      }
    }
  }

  abstract readonly type: "counter" | "gauge" | "histogram";

  protected valuesOf(labels: Labels): string[] {
    const keys = Object.keys(labels);
    const extra = keys.filter((k) => !this.labelNames.includes(k));
    if (extra.length > 0 || keys.length !== this.labelNames.length) {
      throw new Error(
        `Metric ${this.name} takes labels [${this.labelNames.join(", ")}], got [${keys.join(", ")}]`,
      );
    }
    return this.labelNames.map((n) => labels[n] ?? "");
  }

  /**
   * A getter of the series with these labels (checked now), which creates it with `initial()` on the first
   * call: a bound series costs nothing until it counts.
   */
  protected bind(labels: Labels, initial: () => unknown): () => Series {
    const values = this.valuesOf(labels);
    const key = values.join("\u0000");
    let s: Series | undefined;
    return () => {
      if (s !== undefined) return s;
      s = this.series.get(key);
      if (s === undefined) {
        s = { labels: values, value: initial() };
        this.series.set(key, s);
      }
      return s;
    };
  }

  protected labelText(values: readonly string[], extra?: [string, string]): string {
    const pairs = this.labelNames.map((n, i) => `${n}="${escapeLabelValue(values[i] ?? "")}"`);
    if (extra) pairs.push(`${extra[0]}="${escapeLabelValue(extra[1])}"`);
    return pairs.length === 0 ? "" : `{${pairs.join(",")}}`;
  }

  protected sortedSeries(): Series[] {
    return [...this.series.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, s]) => s);
  }

  render(): string {
    const head = `# HELP ${this.name} ${escapeHelp(this.help)}\n# TYPE ${this.name} ${this.type}\n`;
    return head + this.renderSeries();
  }

  protected abstract renderSeries(): string;
}

export class Counter extends Metric {
  readonly type = "counter";

  /** Adds `n` (default 1, must not be negative) to the series with these labels. */
  inc(labels: Labels = {}, n = 1): void {
    this.labels(labels).inc(n);
  }

  /** The series with these labels, bound for counting on a hot path. */
  labels(labels: Labels = {}): CounterSeries {
    const series = this.bind(labels, () => 0);
    return {
      inc: (n = 1) => {
        if (!(n >= 0)) throw new Error(`Counter ${this.name} cannot decrease (got ${n})`);
        const s = series();
        s.value = (s.value as number) + n;
      },
    };
  }

  get(labels: Labels = {}): number {
    return (this.series.get(this.valuesOf(labels).join("\u0000"))?.value as number | undefined) ?? 0;
  }

  protected renderSeries(): string {
    return this.sortedSeries()
      .map((s) => `${this.name}${this.labelText(s.labels)} ${formatValue(s.value as number)}\n`)
      .join("");
  }
}

export class Gauge extends Metric {
  readonly type = "gauge";

  set(value: number, labels: Labels = {}): void {
    const values = this.valuesOf(labels);
    this.series.set(values.join("\u0000"), { labels: values, value });
  }

  get(labels: Labels = {}): number | undefined {
    return this.series.get(this.valuesOf(labels).join("\u0000"))?.value as number | undefined;
  }

  protected renderSeries(): string {
    return this.sortedSeries()
      .map((s) => `${this.name}${this.labelText(s.labels)} ${formatValue(s.value as number)}\n`)
      .join("");
  }
}

interface HistogramState {
  counts: number[];
  sum: number;
  count: number;
}

export class Histogram extends Metric {
  readonly type = "histogram";

  constructor(
    name: string,
    help: string,
    labelNames: readonly string[],
    /** Upper bounds, ascending; `+Inf` is implicit. */
    readonly buckets: readonly number[],
  ) {
    super(name, help, labelNames);
    if (labelNames.includes("le")) throw new Error(`Histogram ${name} cannot use the label "le"`);
    for (let i = 1; i < buckets.length; i++) {
      if (!((buckets[i] as number) > (buckets[i - 1] as number))) {
        throw new Error(`Histogram ${name} buckets must be strictly ascending: ${buckets.join(", ")}`);
      }
    }
  }

  observe(value: number, labels: Labels = {}): void {
    this.labels(labels).observe(value);
  }

  /** The series with these labels, bound for observing on a hot path. */
  labels(labels: Labels = {}): HistogramSeries {
    const buckets = this.buckets;
    const series = this.bind(labels, (): HistogramState => ({
      counts: buckets.map(() => 0),
      sum: 0,
      count: 0,
    }));
    return {
      observe: (value) => {
        const st = series().value as HistogramState;
        const counts = st.counts;
        for (let i = 0; i < buckets.length; i++) {
          if (value <= (buckets[i] as number)) counts[i] = (counts[i] as number) + 1;
        }
        st.sum += value;
        st.count += 1;
      },
    };
  }

  /** Number of observations of the series with these labels. */
  count(labels: Labels = {}): number {
    const s = this.series.get(this.valuesOf(labels).join("\u0000"));
    return s ? (s.value as HistogramState).count : 0;
  }

  protected renderSeries(): string {
    let out = "";
    for (const s of this.sortedSeries()) {
      const st = s.value as HistogramState;
      this.buckets.forEach((b, i) => {
        out += `${this.name}_bucket${this.labelText(s.labels, ["le", formatValue(b)])} ${st.counts[i] ?? 0}\n`;
      });
      out += `${this.name}_bucket${this.labelText(s.labels, ["le", "+Inf"])} ${st.count}\n`;
      out += `${this.name}_sum${this.labelText(s.labels)} ${formatValue(st.sum)}\n`;
      out += `${this.name}_count${this.labelText(s.labels)} ${st.count}\n`;
    }
    return out;
  }
}

export class Registry {
  private readonly metrics: Metric[] = [];

  private add<M extends Metric>(m: M): M {
    if (this.metrics.some((x) => x.name === m.name)) {
      throw new Error(`Metric ${m.name} is already registered`);
    }
    this.metrics.push(m);
    return m;
  }

  counter(name: string, help: string, labelNames: readonly string[] = []): Counter {
    return this.add(new Counter(name, help, labelNames));
  }

  gauge(name: string, help: string, labelNames: readonly string[] = []): Gauge {
    return this.add(new Gauge(name, help, labelNames));
  }

  histogram(
    name: string,
    help: string,
    buckets: readonly number[],
    labelNames: readonly string[] = [],
  ): Histogram {
    return this.add(new Histogram(name, help, labelNames, buckets));
  }

  /** The whole registry in the Prometheus text format (Content-Type `text/plain; version=0.0.4`). */
  render(): string {
    return this.metrics.map((m) => m.render()).join("");
  }
}

export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";
