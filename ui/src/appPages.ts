// The application list's data: pages of 200 rows fetched by offset on demand (never all rows),
// the total from metadata.total, live updates from the stream patched in or invalidating pages.
import { api, type ListFilters } from './api';
import { subscribeApps } from './stream';
import type { AppSummary, Change } from './types';

export const PAGE = 200;
const key = (a: { namespace: string; name: string }) => `${a.namespace}/${a.name}`;

export class AppPages {
  total: number | null = null;
  error: unknown = null;
  private pages = new Map<number, AppSummary[]>();
  private stale = new Set<number>();
  private inflight = new Set<number>();
  private gen = 0;
  private want: [number, number] = [0, 0];
  private unsubscribe: (() => void) | null = null;
  private refetchTimer: number | undefined;
  private closed = false;
  private pollTimer: number | undefined;

  constructor(private filters: ListFilters, private onChange: () => void) {}

  /** Start: the first page, then the live stream. */
  start(): void {
    this.fetchPage(0);
    this.unsubscribe = subscribeApps(this.filters, (c) => this.apply(c));
    // The stream only carries apps that match now: one that stops matching a status filter
    // sends nothing, so status-filtered views also look again now and then.
    if (this.filters.health || this.filters.sync) this.pollTimer = window.setInterval(() => this.invalidate(), 10_000);
  }

  stop(): void {
    this.closed = true;
    this.unsubscribe?.();
    window.clearTimeout(this.refetchTimer);
    window.clearInterval(this.pollTimer);
  }

  /** The row at `i`, if its page is loaded. */
  get(i: number): AppSummary | undefined {
    return this.pages.get(Math.floor(i / PAGE))?.[i % PAGE];
  }

  get loadedFirst(): boolean {
    return this.total !== null;
  }

  /** Rows `from`..`to` are on screen: fetch their pages if missing or stale. */
  ensure(from: number, to: number): void {
    this.want = [from, to];
    const last = this.total === null ? 0 : Math.max(0, Math.ceil(this.total / PAGE) - 1);
    for (let p = Math.floor(Math.max(0, from) / PAGE); p <= Math.min(last, Math.floor(Math.max(0, to) / PAGE)); p++) {
      if ((!this.pages.has(p) || this.stale.has(p)) && !this.inflight.has(p)) this.fetchPage(p);
    }
  }

  private fetchPage(p: number): void {
    const gen = this.gen;
    this.inflight.add(p);
    api
      .listApps(this.filters, PAGE, p * PAGE)
      .then((page) => {
        if (this.closed || gen !== this.gen) return;
        this.pages.set(p, page.items);
        this.stale.delete(p);
        this.total = page.metadata.total;
        this.error = null;
        // A short page before the end means the total moved: drop pages past it.
        const lastPage = Math.max(0, Math.ceil(this.total / PAGE) - 1);
        for (const k of [...this.pages.keys()]) if (k > lastPage) this.pages.delete(k);
        this.onChange();
      })
      .catch((e) => {
        if (this.closed || gen !== this.gen) return;
        this.error = e;
        if (this.total === null) this.total = 0;
        this.onChange();
      })
      .finally(() => {
        if (gen === this.gen) this.inflight.delete(p);
      });
  }

  /** Everything may have moved: keep showing what we have, refetch what is on screen. */
  private invalidate(): void {
    window.clearTimeout(this.refetchTimer);
    this.refetchTimer = window.setTimeout(() => {
      this.gen++;
      this.inflight.clear();
      const [from, to] = this.want;
      const keep = new Set<number>();
      for (let p = Math.floor(from / PAGE); p <= Math.floor(to / PAGE); p++) keep.add(p);
      keep.add(0);
      for (const p of [...this.pages.keys()]) if (!keep.has(p)) this.pages.delete(p);
      for (const p of keep) this.stale.add(p);
      for (const p of keep) this.fetchPage(p);
    }, 400);
  }

  private apply(c: Change): void {
    if (c.type === 'resync') {
      this.invalidate();
      return;
    }
    const k = key(c.application);
    for (const rows of this.pages.values()) {
      const i = rows.findIndex((r) => key(r) === k);
      if (i >= 0) {
        if (c.type === 'upsert') {
          rows[i] = c.application;
          this.onChange();
        } else this.invalidate();
        return;
      }
    }
    // Not loaded: a new app, or one on a page not fetched; counts and positions may move.
    this.invalidate();
  }
}
