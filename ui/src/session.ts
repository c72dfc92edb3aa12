// Who is signed in and what they may do: userinfo once per load, can-i answers cached briefly
// (buttons render only on "yes").
import { useEffect, useState } from 'preact/hooks';
import { api } from './api';
import type { UserInfo } from './types';

let user: UserInfo | null = null;
const userListeners = new Set<(u: UserInfo | null) => void>();

export function setUser(u: UserInfo | null): void {
  user = u;
  canCache.clear();
  userListeners.forEach((l) => l(u));
}

export function useUser(): UserInfo | null {
  const [u, setU] = useState(user);
  useEffect(() => {
    userListeners.add(setU);
    return () => void userListeners.delete(setU);
  }, []);
  return u;
}

const TTL = 60_000;
const canCache = new Map<string, { at: number; answer: Promise<boolean> }>();

/** Whether the caller may `action` on `resource` `object` (false on any error). */
export function canI(resource: string, action: string, object: string): Promise<boolean> {
  const key = `${resource}/${action}/${object}`;
  const hit = canCache.get(key);
  if (hit && Date.now() - hit.at < TTL) return hit.answer;
  const answer = api
    .canI(resource, action, object)
    .then((r) => r.value === 'yes')
    .catch(() => false);
  canCache.set(key, { at: Date.now(), answer });
  return answer;
}

/** can-i as a hook: undefined until known, then true/false. */
export function useCanI(resource: string, action: string, object: string | null): boolean | undefined {
  const [v, setV] = useState<boolean | undefined>(undefined);
  useEffect(() => {
    if (!object) return;
    let live = true;
    setV(undefined);
    canI(resource, action, object).then((ok) => live && setV(ok));
    return () => {
      live = false;
    };
  }, [resource, action, object]);
  return v;
}
