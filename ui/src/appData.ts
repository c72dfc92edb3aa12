// One application's live data for the detail page: the object, its resources and tree, refetched
// when the stream reports a change to it and polled every 5 s while an operation runs.
import { useEffect, useRef, useState } from 'preact/hooks';
import { api } from './api';
import { subscribeApps } from './stream';
import type { Application, Explained } from './types';

export function operationRunning(app: Application | null): boolean {
  if (!app) return false;
  const p = app.status?.operationState?.phase;
  return !!app.operation || p === 'Running' || p === 'Terminating';
}

export interface AppData {
  app: Application | null;
  appError: unknown;
  res: Explained | null;
  resError: unknown;
  resLoading: boolean;
  /** Fetch again now (after an action). */
  reload: () => void;
  /** Bumped whenever the stream says the app changed (history/events views refetch on it). */
  version: number;
}

export function useAppData(ns: string, name: string): AppData {
  const [app, setApp] = useState<Application | null>(null);
  const [appError, setAppError] = useState<unknown>(null);
  const [res, setRes] = useState<Explained | null>(null);
  const [resError, setResError] = useState<unknown>(null);
  const [resLoading, setResLoading] = useState(true);
  const [version, setVersion] = useState(0);
  const timer = useRef<number | undefined>(undefined);
  const alive = useRef(true);

  const loadApp = () =>
    api.app(ns, name).then(
      (a) => {
        if (!alive.current) return;
        setApp(a);
        setAppError(null);
      },
      (e) => alive.current && setAppError(e),
    );
  const loadRes = () => {
    setResLoading(true);
    return api
      .resources(ns, name)
      .then(
        (r) => {
          if (!alive.current) return;
          setRes(r);
          setResError(null);
        },
        (e) => alive.current && setResError(e),
      )
      .finally(() => alive.current && setResLoading(false));
  };
  const reload = () => {
    window.clearTimeout(timer.current);
    timer.current = window.setTimeout(() => {
      loadApp();
      loadRes();
      setVersion((v) => v + 1);
    }, 250);
  };

  useEffect(() => {
    alive.current = true;
    loadApp();
    loadRes();
    let first = true;
    const unsub = subscribeApps({ search: name }, (c) => {
      if (c.type === 'resync') {
        if (first) {
          first = false;
          return;
        }
        reload();
      } else if (c.application.namespace === ns && c.application.name === name) reload();
    });
    return () => {
      alive.current = false;
      unsub();
      window.clearTimeout(timer.current);
    };
  }, [ns, name]);

  // While an operation runs, also look every 5 s (the stream may be behind a proxy that buffers).
  const running = operationRunning(app);
  useEffect(() => {
    if (!running) return;
    const t = window.setInterval(() => {
      if (document.visibilityState === 'visible') {
        loadApp();
        loadRes();
      }
    }, 5000);
    return () => window.clearInterval(t);
  }, [running, ns, name]);

  return { app, appError, res, resError, resLoading, reload, version };
}
