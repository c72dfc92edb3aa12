// Light/dark theme: follows prefers-color-scheme until the user toggles; the choice is kept in
// localStorage and applied as <html data-theme>.
import { useEffect, useState } from 'preact/hooks';

export type Theme = 'light' | 'dark';
const KEY = 'flotilla.theme';
const media = window.matchMedia?.('(prefers-color-scheme: dark)');

function stored(): Theme | null {
  try {
    const v = localStorage.getItem(KEY);
    return v === 'light' || v === 'dark' ? v : null;
  } catch {
    return null;
  }
}

function effective(): Theme {
  return stored() ?? (media?.matches ? 'dark' : 'light');
}

const listeners = new Set<(t: Theme) => void>();

export function applyTheme(): void {
  const t = effective();
  document.documentElement.dataset.theme = t;
  listeners.forEach((l) => l(t));
}
media?.addEventListener?.('change', applyTheme);

export function setTheme(t: Theme): void {
  try {
    localStorage.setItem(KEY, t);
  } catch {
    /* storage unavailable: the choice lasts this page */
  }
  document.documentElement.dataset.theme = t;
  listeners.forEach((l) => l(t));
}

export function useTheme(): Theme {
  const [t, setT] = useState<Theme>(effective);
  useEffect(() => {
    listeners.add(setT);
    return () => void listeners.delete(setT);
  }, []);
  return t;
}
