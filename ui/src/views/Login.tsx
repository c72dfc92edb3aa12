// The sign-in page: SSO link when configured, username/password for the local admin or accounts;
// on success returns to the deep link the user came from.
import { useEffect, useState } from 'preact/hooks';
import { api, ApiError } from '../api';
import { navigate, useLocation } from '../router';
import { setUser } from '../session';
import { setTheme, useTheme } from '../theme';
import type { AuthConfig } from '../types';

/** Only same-site relative paths are followed after login. */
function safeReturn(r: string | null): string {
  // As the server's safe_return_url: a local path, no scheme-relative or backslash tricks, no
  // control characters or spaces.
  if (!r || !r.startsWith('/') || r.startsWith('//') || r.startsWith('/login') || /[\\\s\u0000-\u001f\u007f]/.test(r)) {
    return '/applications';
  }
  return r;
}

export function Login() {
  const loc = useLocation();
  const ret = safeReturn(loc.query.get('return'));
  const [cfg, setCfg] = useState<AuthConfig | null>(null);
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const theme = useTheme();

  useEffect(() => {
    api.authConfig().then(setCfg, () => setCfg({ sso: false, localAdmin: true }));
  }, []);

  const submit = async (e: Event) => {
    e.preventDefault();
    setError('');
    if (!username || !password) {
      setError('Enter a username and a password.');
      return;
    }
    setBusy(true);
    try {
      const r = await api.login(username, password);
      let groups: string[] = [];
      try {
        const u = await api.userInfo();
        groups = u.groups ?? [];
      } catch {
        /* userinfo is a nicety here */
      }
      setUser({ loggedIn: true, username: r.username ?? username, groups });
      navigate(ret, true);
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) setError(`Invalid username or password. ${err.message !== 'Unauthorized' ? `(${err.message})` : ''}`.trim());
      else if (err instanceof ApiError && err.status === 429) setError(`Too many failed attempts; wait a moment and try again. (${err.message})`);
      else setError(err instanceof Error ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  };

  const showForm = !cfg || !cfg.sso || cfg.localAdmin !== false;
  const next = theme === 'dark' ? 'light' : 'dark';
  return (
    <main class="login-page" id="main">
      <button type="button" class="icon-btn login-theme" data-testid="theme-toggle" aria-label={`Switch to ${next} theme`} onClick={() => setTheme(next)}>
        {theme === 'dark' ? '☀' : '☾'}
      </button>
      <div class="login-card">
        <div class="login-brand">
          <svg viewBox="0 0 32 32" width="40" height="40" aria-hidden="true">
            <rect width="32" height="32" rx="6" class="brand-bg" />
            <path d="M6 20h20l-3 5H9z M15 6v13 M15 7l8 10h-8z" class="brand-fg" />
          </svg>
          <div>
            <h1>Flotilla</h1>
            <p class="muted">GitOps continuous delivery</p>
          </div>
        </div>
        {cfg?.sso && (
          <a class="btn primary block" data-testid="login-sso" href={`${cfg.loginPath ?? '/auth/login'}?return_url=${encodeURIComponent(ret)}`}>
            Log in via {cfg.name || 'SSO'}
          </a>
        )}
        {cfg?.sso && showForm && <div class="or">or</div>}
        {showForm && (
          <form onSubmit={submit} noValidate>
            <label for="username">Username</label>
            <input id="username" name="username" autoComplete="username" autoFocus value={username} onInput={(e) => setUsername(e.currentTarget.value)} required />
            <label for="password">Password</label>
            <input id="password" name="password" type="password" autoComplete="current-password" value={password} onInput={(e) => setPassword(e.currentTarget.value)} required />
            <div class="login-error" role="alert">
              {error}
            </div>
            <button type="submit" class="btn primary block" data-testid="login-submit" disabled={busy}>
              {busy ? 'Signing in…' : 'Sign in'}
            </button>
          </form>
        )}
      </div>
    </main>
  );
}
