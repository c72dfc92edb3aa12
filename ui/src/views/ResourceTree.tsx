// The resource tree: managed resources as roots, with the objects the cluster made for them
// (Deployment → ReplicaSet → Pod) nested below; health per node; a managed node opens its diff.
import type { AppData } from '../appData';
import { ErrorBox } from '../components/ErrorBox';
import { Link } from '../components/Link';
import { resourceId } from '../format';
import { useLocation, withQuery } from '../router';
import type { Application, ChildNode, ResourceView } from '../types';

const KIND_ORDER = ['Namespace', 'CustomResourceDefinition', 'ServiceAccount', 'Role', 'ClusterRole', 'RoleBinding', 'ClusterRoleBinding', 'ConfigMap', 'Secret', 'PersistentVolumeClaim', 'Service', 'Deployment', 'StatefulSet', 'DaemonSet', 'ReplicaSet', 'Job', 'CronJob', 'Pod', 'Ingress'];
const ABBR: Record<string, string> = {
  Deployment: 'deploy', ReplicaSet: 'rs', Pod: 'pod', Service: 'svc', ConfigMap: 'cm', Secret: 'secret', StatefulSet: 'sts', DaemonSet: 'ds', Job: 'job', CronJob: 'cj',
  Ingress: 'ing', Namespace: 'ns', ServiceAccount: 'sa', PersistentVolumeClaim: 'pvc', Role: 'role', RoleBinding: 'rb', ClusterRole: 'crole', ClusterRoleBinding: 'crb',
  HorizontalPodAutoscaler: 'hpa', CustomResourceDefinition: 'crd', PodDisruptionBudget: 'pdb', NetworkPolicy: 'netpol',
};

function kindRank(k: string): number {
  const i = KIND_ORDER.indexOf(k);
  return i < 0 ? KIND_ORDER.length : i;
}

interface TreeNode {
  kind: string;
  name: string;
  namespace?: string;
  health?: string;
  healthMsg?: string;
  sync?: string;
  info?: string;
  managed?: ResourceView;
  children: TreeNode[];
}

function build(resources: ResourceView[], children: ChildNode[]): TreeNode[] {
  const byParent = new Map<string, ChildNode[]>();
  for (const c of children) byParent.set(c.parentUid, [...(byParent.get(c.parentUid) ?? []), c]);
  const seen = new Set<string>();
  const kids = (uid: string | undefined): TreeNode[] => {
    if (!uid || seen.has(uid)) return [];
    seen.add(uid);
    return (byParent.get(uid) ?? [])
      .slice()
      .sort((a, b) => kindRank(a.kind) - kindRank(b.kind) || a.name.localeCompare(b.name))
      .map((c) => ({ kind: c.kind, name: c.name, namespace: c.namespace, health: c.health?.status, healthMsg: c.health?.message, info: c.info, children: kids(c.uid) }));
  };
  return resources
    .slice()
    .sort((a, b) => kindRank(a.kind) - kindRank(b.kind) || a.kind.localeCompare(b.kind) || a.name.localeCompare(b.name))
    .map((r) => ({ kind: r.kind, name: r.name, namespace: r.namespace, health: r.health?.status, healthMsg: r.health?.message, sync: r.status, managed: r, children: kids(r.uid) }));
}

function Node(props: { n: TreeNode; path: string; selected: string | null }) {
  const { n } = props;
  const id = n.managed ? resourceId(n.managed) : '';
  const body = (
    <>
      <span class="kind-abbr" aria-hidden="true">{ABBR[n.kind] ?? n.kind.slice(0, 4).toLowerCase()}</span>
      <span class="node-text">
        <span class="node-kind">{n.kind}</span>
        <span class="node-name">{n.name}</span>
        {n.info && <span class="node-info">{n.info}</span>}
      </span>
      <span class="node-status">
        {n.health && (
          <span class={`dot health-${n.health.toLowerCase()}`} title={`Health: ${n.health}${n.healthMsg ? ` — ${n.healthMsg}` : ''}`}>
            <span class="ico" aria-hidden="true" />
            <span class="dot-word">{n.health}</span>
          </span>
        )}
        {n.sync && (
          <span class={`dot sync-${n.sync.toLowerCase()}`} title={`Sync: ${n.sync}`}>
            <span class="ico" aria-hidden="true" />
            <span class="dot-word">{n.sync}</span>
          </span>
        )}
        {n.managed?.requiresPruning && <span class="tag prune">prune</span>}
      </span>
    </>
  );
  const attrs = { 'data-testid': 'tree-node', 'data-kind': n.kind, 'data-name': n.name, 'data-health': n.health ?? '' };
  return (
    <li>
      {n.managed ? (
        <Link
          href={withQuery(props.path, new URLSearchParams(), { view: 'diff', resource: id })}
          class={`tree-node managed${props.selected === id ? ' selected' : ''}`}
          title={`Open the diff of ${n.kind} ${n.name}`}
          {...attrs}
        >
          {body}
        </Link>
      ) : (
        <div class="tree-node" {...attrs}>
          {body}
        </div>
      )}
      {n.children.length > 0 && (
        <ul>
          {n.children.map((c, i) => (
            <Node key={`${c.kind}/${c.name}/${i}`} n={c} path={props.path} selected={props.selected} />
          ))}
        </ul>
      )}
    </li>
  );
}

export function ResourceTree(props: { app: Application; data: AppData }) {
  const loc = useLocation();
  const { res, resError, resLoading } = props.data;
  if (!res) {
    if (resError) return <ErrorBox error={resError} what="the resources" />;
    return <p class="muted">{resLoading ? 'Loading resources…' : 'No resources.'}</p>;
  }
  const roots = build(res.resources, res.children ?? []);
  return (
    <div class="tree-wrap">
      {resError ? <ErrorBox error={resError} what="the latest resources (showing the previous answer)" /> : null}
      <div class="tree-root">
        <span class="kind-abbr app" aria-hidden="true">app</span>
        <strong>{props.app.metadata.name}</strong>
        <span class="muted">
          {res.resources.length} managed resource{res.resources.length === 1 ? '' : 's'}
          {res.children?.length ? `, ${res.children.length} created by the cluster` : ''}
        </span>
      </div>
      {roots.length === 0 ? (
        <p class="muted">This application manages no resources.</p>
      ) : (
        <ul class="tree" aria-label="Resource tree">
          {roots.map((n, i) => (
            <Node key={`${n.kind}/${n.namespace}/${n.name}/${i}`} n={n} path={loc.path} selected={loc.query.get('resource')} />
          ))}
        </ul>
      )}
      {res.childrenTruncated && <p class="muted">Some objects below the workloads are not shown (a limit was reached or a list failed).</p>}
    </div>
  );
}
