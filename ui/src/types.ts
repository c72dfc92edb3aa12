// Shapes of the Flotilla API's JSON answers, as the Rust server writes them
// (server/src/query.rs, app_api.rs, fleet_api.rs; controller/src/explain.rs, tree.rs, operation.rs).

/** One row of `GET /api/v1/applications` (query.rs `AppSummary`). */
export interface AppSummary {
  namespace: string;
  name: string;
  project: string;
  repoUrl: string;
  path: string;
  targetRevision: string;
  destServer: string;
  destName: string;
  destNamespace: string;
  sync: string;
  health: string;
  revision: string;
  operationPhase?: string;
  labels: Record<string, string>;
}

export interface AppPage {
  items: AppSummary[];
  metadata: { total: number; continue?: string };
}

/** Stream events (stream.rs `Change`). */
export type Change =
  | { type: 'upsert'; application: AppSummary }
  | { type: 'delete'; application: AppSummary }
  | { type: 'resync' };

export interface ApplicationSource {
  repoURL: string;
  targetRevision?: string;
  path?: string;
  chart?: string;
  helm?: unknown;
  kustomize?: unknown;
  directory?: unknown;
  plugin?: unknown;
}

export interface HealthStatus {
  status: string;
  message?: string;
}

export interface Condition {
  type: string;
  message: string;
  lastTransitionTime?: string;
}

/** `operationState.syncResult.resources[]` (operation.rs `ResourceResult`). */
export interface ResourceResult {
  group?: string;
  version?: string;
  kind: string;
  namespace?: string;
  name: string;
  status: string;
  message?: string;
  syncPhase?: string;
  hookType?: string;
  hookPhase?: string;
  /** Not in Argo CD's result shape; the panel takes it from the managed resource's syncWave. */
  syncWave?: number | string;
}

export interface OperationState {
  operation?: { sync?: { revision?: string; prune?: boolean; dryRun?: boolean; syncOptions?: string[] }; initiatedBy?: { username?: string; automated?: boolean } };
  phase: string;
  message?: string;
  syncResult?: { revision?: string; resources?: ResourceResult[] };
  startedAt?: string;
  finishedAt?: string;
  retryCount?: number;
}

export interface HistoryEntry {
  id: number;
  revision?: string;
  deployedAt?: string;
  deployStartedAt?: string;
  initiatedBy?: { username?: string; automated?: boolean };
  source?: ApplicationSource;
}

/** `GET /api/v1/applications/{ns}/{name}`: the Application object. */
export interface Application {
  metadata: { name: string; namespace: string; labels?: Record<string, string>; resourceVersion?: string; deletionTimestamp?: string };
  spec: {
    project?: string;
    source?: ApplicationSource;
    sources?: ApplicationSource[];
    destination: { server?: string; name?: string; namespace?: string };
    syncPolicy?: { automated?: { prune?: boolean; selfHeal?: boolean }; syncOptions?: string[] };
  };
  operation?: unknown;
  status?: {
    sync?: { status: string; revision?: string; revisions?: string[] };
    health?: HealthStatus;
    operationState?: OperationState;
    reconciledAt?: string;
    conditions?: Condition[];
    history?: HistoryEntry[];
    sourceType?: string;
    resources?: { group?: string; version?: string; kind: string; namespace?: string; name: string; status?: string; health?: HealthStatus; requiresPruning?: boolean }[];
  };
}

/** One managed resource (explain.rs `ResourceView`). */
export interface ResourceView {
  group: string;
  version: string;
  kind: string;
  namespace?: string;
  name: string;
  uid?: string;
  status: string;
  health?: HealthStatus;
  requiresPruning?: boolean;
  /** Its sync wave (annotation, else Helm hook weight, else 0). */
  syncWave?: number;
  differences?: string[];
  diff?: string;
}

/** One object the cluster made for a managed one (tree.rs `ChildNode`). */
export interface ChildNode {
  group: string;
  version: string;
  kind: string;
  namespace: string;
  name: string;
  uid: string;
  parentUid: string;
  health?: HealthStatus;
  info?: string;
}

export interface Explained {
  resources: ResourceView[];
  children?: ChildNode[];
  childrenTruncated?: boolean;
}

export interface AppEvent {
  type?: string;
  reason?: string;
  message?: string;
  count?: number;
  time?: string;
  source?: string;
}

export interface AuthConfig {
  sso: boolean;
  ready?: boolean;
  name?: string;
  loginPath?: string;
  localAdmin?: boolean;
  configured?: boolean;
}

export interface UserInfo {
  loggedIn: boolean;
  username?: string;
  groups?: string[];
}

export interface ReplicaStatus {
  identity?: string;
  applications?: number;
  ownedClusters?: string[];
  pendingClusters?: string[];
  releasingClusters?: string[];
  fenced?: boolean;
  ownsAll?: boolean;
  ownedApplications?: number;
  queueDepth?: number;
  queueOldestSeconds?: number | null;
  repoServerCallsInFlight?: number;
  manifestCache?: { hitsMemory?: number; hitsShared?: number; misses?: number; hitRatio?: number };
  stopping?: boolean;
}

export interface Replica {
  identity: string;
  live: boolean;
  address?: string | null;
  claimedClusters?: number;
  reconcilesPerSecond?: number | null;
  status?: ReplicaStatus;
  error?: string;
}

export interface RepoServer {
  endpoint: string;
  up: boolean;
  rendersRunning?: number | null;
  rendersWaiting?: number | null;
  renderSlots?: number | null;
}

export interface Handover {
  cluster: string;
  from: string | null;
  to: string | null;
  at: string;
}

export interface Fleet {
  replicas: Replica[];
  manifestCacheHitRatio?: number | null;
  repoServers: RepoServer[];
  applications?: number;
  clusters?: number;
  unownedClusters?: string[];
  handovers?: Handover[];
}

export interface ClusterView {
  name: string;
  server: string;
  project?: string | null;
  applications?: number;
  owner?: string | null;
}
