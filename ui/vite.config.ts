// Vite build and dev-server settings for the Flotilla web UI (JSX via esbuild, Preact runtime).
// The dev server proxies /api and /auth to a running flotilla-server.
import { defineConfig } from 'vite';

const apiPort = process.env.FLOTILLA_API_PORT ?? '8080';
const target = `http://127.0.0.1:${apiPort}`;
// Dev only: a bearer token to add to proxied calls (handy before a browser session exists).
const devToken = process.env.FLOTILLA_DEV_TOKEN;

const proxied = {
  target,
  changeOrigin: false,
  configure: (proxy: { on: (ev: string, cb: (req: { setHeader: (k: string, v: string) => void }) => void) => void }) => {
    if (devToken) proxy.on('proxyReq', (req) => req.setHeader('Authorization', `Bearer ${devToken}`));
  },
};

export default defineConfig({
  base: '/',
  esbuild: { jsx: 'automatic', jsxImportSource: 'preact' },
  build: {
    target: 'es2022',
    modulePreload: { polyfill: false },
    cssCodeSplit: false,
    assetsInlineLimit: 0,
    sourcemap: false,
  },
  server: {
    proxy: { '/api': proxied, '/auth': proxied },
  },
});
