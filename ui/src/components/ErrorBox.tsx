// An API error shown inline: "permission denied" for 403, otherwise the server's message.
import { ApiError } from '../api';

export function ErrorBox(props: { error: unknown; what?: string }) {
  const e = props.error;
  if (!e) return null;
  const denied = e instanceof ApiError && e.status === 403;
  // The heading already says it was denied: show only what the server added, if anything.
  const raw = e instanceof Error ? e.message : String(e);
  const msg = denied ? raw.replace(/^(permission denied:?\s*)+/i, '') : raw;
  return (
    <div class={`error-box${denied ? ' denied' : ''}`} role="alert">
      <strong>{denied ? 'Permission denied' : props.what ? `Could not load ${props.what}` : 'Error'}</strong>
      {msg && <span>{msg}</span>}
    </div>
  );
}
