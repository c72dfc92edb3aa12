// Client-side routing: the URL (path + query) is the state of every view; navigate() pushes it,
// useLocation() re-renders on change, and <Link> turns plain clicks into navigations.
import { useEffect, useState } from 'preact/hooks';

export interface Loc {
  path: string;
  query: URLSearchParams;
  /** path + search, for return links. */
  full: string;
}

function current(): Loc {
  return { path: location.pathname, query: new URLSearchParams(location.search), full: location.pathname + location.search };
}

const listeners = new Set<() => void>();
window.addEventListener('popstate', () => listeners.forEach((l) => l()));

/** Go to `to` (path with optional query); `replace` keeps history clean for filter typing. */
export function navigate(to: string, replace = false): void {
  if (to === location.pathname + location.search) return;
  if (replace) history.replaceState(null, '', to);
  else history.pushState(null, '', to);
  listeners.forEach((l) => l());
  if (!replace) window.scrollTo(0, 0);
}

export function useLocation(): Loc {
  const [loc, setLoc] = useState(current);
  useEffect(() => {
    const l = () => setLoc(current());
    listeners.add(l);
    return () => void listeners.delete(l);
  }, []);
  return loc;
}

/** `path` with `changes` applied to the current query (empty values removed). */
export function withQuery(path: string, base: URLSearchParams, changes: Record<string, string | null | undefined>): string {
  const q = new URLSearchParams(base);
  for (const [k, v] of Object.entries(changes)) {
    if (v === null || v === undefined || v === '') q.delete(k);
    else q.set(k, v);
  }
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

/** A click handler for <a href> that navigates in-app on a plain left click. */
export function linkClick(e: MouseEvent): void {
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const a = e.currentTarget as HTMLAnchorElement;
  if (a.target && a.target !== '_self') return;
  e.preventDefault();
  navigate(a.getAttribute('href') ?? '/');
}

export function appHref(ns: string, name: string, query?: string): string {
  return `/applications/${encodeURIComponent(ns)}/${encodeURIComponent(name)}${query ? `?${query}` : ''}`;
}
