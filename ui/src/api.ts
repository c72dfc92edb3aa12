// HTTP calls to the Flotilla API: cookie session, CSRF header on writes, errors surfaced as ApiError,
// 401 sends the user to /login (keeping the deep link).
import type {
  AppEvent, AppPage, Application, AuthConfig, ClusterView, Explained, Fleet, HistoryEntry, OperationState, UserInfo,
} from './types';

export class ApiError extends Error {
  constructor(public status: number, message: string) {
    super(message);
  }
  get denied(): boolean {
    return this.status === 403;
  }
}

let onUnauthorized: () => void = () => {};
/** Set by the app shell: what to do when a call answers 401. */
export function setUnauthorizedHandler(f: () => void): void {
  onUnauthorized = f;
}

async function request<T>(method: string, url: string, body?: unknown, opts: { noRedirect?: boolean } = {}): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (method !== 'GET') headers['X-Requested-With'] = 'flotilla';
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res: Response;
  try {
    res = await fetch(url, {
      method,
      headers,
      credentials: 'same-origin',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError(0, `network error: ${(e as Error).message}`);
  }
  const text = await res.text();
  let data: unknown = undefined;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = undefined;
    }
  }
  if (!res.ok) {
    const msg =
      data && typeof data === 'object' && typeof (data as { error?: unknown }).error === 'string'
        ? (data as { error: string }).error
        : `${res.status} ${res.statusText || 'error'}${text && !data ? `: ${text.slice(0, 200)}` : ''}`;
    if (res.status === 401 && !opts.noRedirect) onUnauthorized();
    throw new ApiError(res.status, res.status === 403 ? `permission denied: ${msg}` : msg);
  }
  return data as T;
}

const enc = encodeURIComponent;
const appPath = (ns: string, name: string) => `/api/v1/applications/${enc(ns)}/${enc(name)}`;

/** The list's filters as the server names them. */
export interface ListFilters {
  search?: string;
  project?: string;
  cluster?: string;
  namespace?: string;
  selector?: string;
  health?: string;
  sync?: string;
}

export function filterQuery(f: ListFilters): URLSearchParams {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(f)) if (v) q.set(k, v);
  return q;
}

export const api = {
  authConfig: () => request<AuthConfig>('GET', '/api/v1/auth/config', undefined, { noRedirect: true }),
  userInfo: () => request<UserInfo>('GET', '/api/v1/session/userinfo', undefined, { noRedirect: true }),
  login: (username: string, password: string) =>
    request<{ username: string }>('POST', '/api/v1/session', { username, password }, { noRedirect: true }),
  logout: () => request<unknown>('DELETE', '/api/v1/session', undefined, { noRedirect: true }),
  canI: (resource: string, action: string, object: string) =>
    request<{ value: string }>(
      'GET',
      `/api/v1/account/can-i/${enc(resource)}/${enc(action)}/${object.split('/').map(enc).join('/')}`,
    ),

  listApps: (f: ListFilters, limit: number, offset: number) => {
    const q = filterQuery(f);
    q.set('limit', String(limit));
    if (offset > 0) q.set('offset', String(offset));
    return request<AppPage>('GET', `/api/v1/applications?${q}`);
  },
  app: (ns: string, name: string) => request<Application>('GET', appPath(ns, name)),
  resources: (ns: string, name: string) => request<Explained>('GET', `${appPath(ns, name)}/resources`),
  events: (ns: string, name: string) => request<{ items: AppEvent[] }>('GET', `${appPath(ns, name)}/events`),
  history: (ns: string, name: string) =>
    request<{ history: HistoryEntry[]; operationState?: OperationState | null }>('GET', `${appPath(ns, name)}/history`),
  sync: (ns: string, name: string, body: SyncBody) => request<unknown>('POST', `${appPath(ns, name)}/sync`, body),
  refresh: (ns: string, name: string, hard: boolean) =>
    request<unknown>('POST', `${appPath(ns, name)}/refresh${hard ? '?hard=true' : ''}`),
  terminate: (ns: string, name: string) => request<unknown>('POST', `${appPath(ns, name)}/terminate`),
  rollback: (ns: string, name: string, id: number, prune: boolean, dryRun: boolean) =>
    request<unknown>('POST', `${appPath(ns, name)}/rollback`, { id, prune, dryRun }),

  projects: () => request<{ items: { metadata: { name: string } }[] }>('GET', '/api/v1/projects'),
  clusters: () => request<{ items: ClusterView[] }>('GET', '/api/v1/clusters'),
  fleet: () => request<Fleet>('GET', '/api/v1/fleet'),
};

/** Body of `POST .../sync` (server/src/actions.rs `SyncRequest`). */
export interface SyncBody {
  revision?: string;
  prune?: boolean;
  dryRun?: boolean;
  syncOptions?: string[];
  resources?: { group: string; kind: string; name: string; namespace?: string }[];
  /** Argo CD's `syncStrategy` (apply only); sent only when asked for. */
  syncStrategy?: { apply: { force?: boolean } };
}
