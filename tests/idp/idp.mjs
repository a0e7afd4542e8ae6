// A real OpenID provider (npm oidc-provider) for gatehouse's integration tests.
// It issues JWT access tokens shaped like Keycloak's: typ "Bearer", azp,
// realm_access.roles, resource_access.<client>.roles, acr, amr, sid, email, name.
//
// Environment:
//   IDP_PORT    port on 127.0.0.1 (0 picks a free one; the chosen port is printed)
//   IDP_KEYS    path to a JSON file {"keys":[<private JWKs>]}; the first key of an
//               algorithm signs, so reordering the file rotates keys
//   IDP_USERS   path to a JSON file {"<client_id>": {"claims": {...}, "header": {...}, "alg": "RS256"}}
//               each entry is a client_credentials client (secret "secret") whose
//               tokens carry those claims; a null claim removes it
//   IDP_AUDIENCE  the aud of access tokens (default "gatehouse")
//   IDP_RP      optional JSON {"client_id","redirect_uri","backchannel_logout_uri",
//               "post_logout_redirect_uri"}: a confidential authorization-code
//               client (secret "secret") for the browser login flow, with refresh
//               tokens and back-channel logout (sid required)
//   IDP_ACCOUNTS  path to a JSON file {"<login>": {"password": "...", "claims": {...},
//               "disabled": false}}, read again on every use so a test can change
//               roles or disable an account while the IdP runs
//   IDP_AT_TTL  access token lifetime in seconds (default 300)
// The login form at /interaction/<uid> takes login, password and an optional
// otp ("123456"): with it the login has acr "gold" and amr ["pwd","otp"], without
// it acr "pwd" and amr ["pwd"]. Consent is implied (first-party client).
// Prints one line "listening <issuer>" when ready.
//
// `node idp.mjs genkey RSA|EC|OKP KID` prints a new private JWK (for key files).
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import Provider from 'oidc-provider';

if (process.argv[2] === 'genkey') {
  const [, , , kty, kid] = process.argv;
  const pair = kty === 'EC'
    ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
    : kty === 'OKP'
      ? generateKeyPairSync('ed25519')
      : generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = pair.privateKey.export({ format: 'jwk' });
  jwk.kid = kid;
  jwk.use = 'sig';
  jwk.alg = kty === 'EC' ? 'ES256' : kty === 'OKP' ? 'EdDSA' : 'RS256';
  console.log(JSON.stringify(jwk));
  process.exit(0);
}

const port = Number(process.env.IDP_PORT || 0);
const keys = JSON.parse(readFileSync(process.env.IDP_KEYS, 'utf8'));
const users = JSON.parse(readFileSync(process.env.IDP_USERS, 'utf8'));
const audience = process.env.IDP_AUDIENCE || 'gatehouse';
const rp = process.env.IDP_RP ? JSON.parse(process.env.IDP_RP) : null;
const atTtl = Number(process.env.IDP_AT_TTL || 300);
const accounts = () => (process.env.IDP_ACCOUNTS
  ? JSON.parse(readFileSync(process.env.IDP_ACCOUNTS, 'utf8')) : {});

function start(issuer, server) {
  const provider = new Provider(issuer, {
    jwks: keys,
    clients: Object.keys(users).map((id) => ({
      client_id: id,
      client_secret: 'secret',
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
      token_endpoint_auth_method: 'client_secret_post',
    })).concat(rp ? [{
      client_id: rp.client_id,
      client_secret: 'secret',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: [rp.redirect_uri],
      post_logout_redirect_uris: rp.post_logout_redirect_uri ? [rp.post_logout_redirect_uri] : [],
      backchannel_logout_uri: rp.backchannel_logout_uri,
      backchannel_logout_session_required: true,
      token_endpoint_auth_method: 'client_secret_basic',
    }] : []),
    acrValues: ['pwd', 'gold'],
    // Like Keycloak, every ID token carries acr, amr and auth_time.
    claims: {
      sid: null,
      iss: null,
      openid: ['sub', 'acr', 'amr', 'auth_time'],
      profile: ['name', 'preferred_username'],
      email: ['email'],
    },
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
    async findAccount(ctx, id) {
      const a = accounts()[id];
      if (!a || a.disabled) return undefined;
      return { accountId: id, claims: async () => ({ sub: id, ...(a.claims || {}) }) };
    },
    // First-party client: consent is implied, with the API resource granted.
    async loadExistingGrant(ctx) {
      const grantId = ctx.oidc.result?.consent?.grantId
        || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId) {
        const g = await ctx.oidc.provider.Grant.find(grantId);
        if (g) return g;
      }
      const grant = new ctx.oidc.provider.Grant({
        clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId,
      });
      grant.addOIDCScope('openid profile email offline_access');
      grant.addResourceScope('urn:gatehouse', 'api');
      await grant.save();
      return grant;
    },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    // Outgoing calls (back-channel logout) go to gatehouse on loopback, which the
    // provider's SSRF guard refuses by default; this test IdP allows it.
    fetch: (url, options) => {
      const { dispatcher, ...rest } = options;
      return globalThis.fetch(url, rest);
    },
    ttl: { AccessToken: atTtl },
    features: {
      clientCredentials: { enabled: true },
      devInteractions: { enabled: false },
      backchannelLogout: { enabled: true },
      rpInitiatedLogout: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => 'urn:gatehouse',
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, resource, client) => ({
          scope: 'api',
          audience,
          accessTokenTTL: atTtl,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: (users[client.clientId] || {}).alg || 'RS256' } },
        }),
      },
    },
    formats: {
      customizers: {
        jwt(ctx, token, jwt) {
          const u = (token.accountId ? accounts()[token.accountId] : users[token.clientId]) || {};
          jwt.payload.typ = 'Bearer';
          jwt.payload.azp = token.clientId;
          for (const [k, v] of Object.entries(u.claims || {})) {
            if (v === null) delete jwt.payload[k];
            else jwt.payload[k] = v;
          }
          if (u.header) jwt.header = { ...u.header };
        },
      },
    },
  });
  provider.on('backchannel.error', (ctx, err) => console.error('idp: back-channel logout failed:', err.message));
  provider.proxy = false;
  const callback = provider.callback();
  server.on('request', (req, res) => {
    if (req.url.startsWith('/interaction/')) {
      interaction(provider, req, res).catch((e) => { res.statusCode = 500; res.end(String(e)); });
    } else {
      callback(req, res);
    }
  });
}

// The login page: a form, and its POST, which finishes the interaction.
async function interaction(provider, req, res) {
  const details = await provider.interactionDetails(req, res);
  if (req.method === 'GET') {
    res.setHeader('content-type', 'text/html');
    res.end(`<form method="post" action="/interaction/${details.uid}">
      <input name="login"><input name="password" type="password"><input name="otp">
      <button type="submit">Sign in</button></form>`);
    return;
  }
  let body = '';
  for await (const chunk of req) body += chunk;
  const form = new URLSearchParams(body);
  const login = form.get('login');
  const a = accounts()[login];
  if (!a || a.disabled || a.password !== form.get('password')) {
    res.statusCode = 401;
    res.end('wrong login or password');
    return;
  }
  const otp = form.get('otp') === '123456';
  await provider.interactionFinished(req, res, {
    login: { accountId: login, acr: otp ? 'gold' : 'pwd', amr: otp ? ['pwd', 'otp'] : ['pwd'] },
  }, { mergeWithLastSubmission: false });
}

const server = createServer();
server.listen(port, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  start(issuer, server);
  console.log(`listening ${issuer}`);
});
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
