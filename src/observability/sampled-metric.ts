export interface Sample {
  labels: Record<string, string>;
  value: number;
  /** A histogram's series (`<name>_bucket`, `_sum`, `_count`); the metric's name otherwise. */
  metricName?: string;
}

export type SampledType = 'counter' | 'gauge' | 'histogram';

/**
 * A Prometheus metric whose values are read from the components' plain counters at scrape time,
 * so the hot path only increments numbers and never calls into the metrics library. prom-client's
 * Registry accepts any object with this shape.
 */
export class SampledMetric {
  readonly name: string;
  readonly help: string;
  readonly type: SampledType;
  readonly aggregator = 'sum';
  private readonly sample: () => Sample[] | Promise<Sample[]>;

  constructor(name: string, help: string, type: SampledType, sample: () => Sample[] | Promise<Sample[]>) {
    this.name = name;
    this.help = help;
    this.type = type;
    this.sample = sample;
  }

  async get() {
    return {
      name: this.name,
      help: this.help,
      type: this.type,
      aggregator: this.aggregator,
      values: await this.sample(),
    };
  }

  reset(): void {}
}
