// Sync and health badges: an icon (CSS, hidden from text) plus the exact status word, coloured
// per status with text that meets contrast on both themes.
export const HEALTH_WORDS = ['Healthy', 'Progressing', 'Degraded', 'Suspended', 'Missing', 'Unknown'];
export const SYNC_WORDS = ['Synced', 'OutOfSync', 'Unknown'];

export function HealthBadge(props: { status?: string; testid?: string; small?: boolean }) {
  const word = props.status || 'Unknown';
  return (
    <span class={`badge health-${word.toLowerCase()}${props.small ? ' small' : ''}`} title={`Health: ${word}`}>
      <span class="ico" aria-hidden="true" />
      <span data-testid={props.testid ?? 'health-status'}>{word}</span>
    </span>
  );
}

export function SyncBadge(props: { status?: string; testid?: string; small?: boolean }) {
  const word = props.status || 'Unknown';
  return (
    <span class={`badge sync-${word.toLowerCase()}${props.small ? ' small' : ''}`} title={`Sync: ${word}`}>
      <span class="ico" aria-hidden="true" />
      <span data-testid={props.testid ?? 'sync-status'}>{word}</span>
    </span>
  );
}

export function PhaseBadge(props: { phase?: string }) {
  if (!props.phase) return null;
  return <span class={`badge phase-${props.phase.toLowerCase()}`}>{props.phase}</span>;
}
