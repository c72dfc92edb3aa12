// Live application changes from the server's Server-Sent Events stream
// (`/api/v1/stream/applications`, events upsert/delete/resync), reconnecting with backoff.
import { filterQuery, type ListFilters } from './api';
import type { Change } from './types';

/** Subscribe to changes matching `filters`; returns the unsubscribe function. */
export function subscribeApps(filters: ListFilters, onChange: (c: Change) => void): () => void {
  let es: EventSource | null = null;
  let closed = false;
  let retry = 1000;
  let timer: number | undefined;
  const url = `/api/v1/stream/applications?${filterQuery(filters)}`;

  const open = () => {
    if (closed) return;
    es = new EventSource(url, { withCredentials: true });
    const handle = (ev: MessageEvent) => {
      retry = 1000;
      try {
        onChange(JSON.parse(ev.data) as Change);
      } catch {
        /* a malformed event: ignore it, the next resync corrects */
      }
    };
    es.addEventListener('upsert', handle as EventListener);
    es.addEventListener('delete', handle as EventListener);
    es.addEventListener('resync', handle as EventListener);
    es.onerror = () => {
      // EventSource retries by itself unless the server refused (closed state); then back off.
      if (es && es.readyState === EventSource.CLOSED) {
        es = null;
        timer = window.setTimeout(open, retry);
        retry = Math.min(retry * 2, 30000);
      }
    };
  };
  open();
  // Leaving the page (or entering the back/forward cache) closes the stream at once, so an
  // HTTP/1.1 connection (six per host) is not held by a page no one sees.
  const hide = () => {
    window.clearTimeout(timer);
    es?.close();
    es = null;
  };
  const show = (e: PageTransitionEvent) => {
    if (e.persisted && !closed && !es) open();
  };
  window.addEventListener('pagehide', hide);
  window.addEventListener('pageshow', show);
  return () => {
    closed = true;
    window.removeEventListener('pagehide', hide);
    window.removeEventListener('pageshow', show);
    window.clearTimeout(timer);
    es?.close();
  };
}
