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
    })),
    features: {
      clientCredentials: { enabled: true },
      devInteractions: { enabled: false },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => 'urn:gatehouse',
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, resource, client) => ({
          scope: 'api',
          audience,
          accessTokenTTL: 300,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: (users[client.clientId] || {}).alg || 'RS256' } },
        }),
      },
    },
    formats: {
      customizers: {
        jwt(ctx, token, jwt) {
          const u = users[token.clientId] || {};
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
  provider.proxy = false;
  server.on('request', provider.callback());
}

const server = createServer();
server.listen(port, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  start(issuer, server);
  console.log(`listening ${issuer}`);
});
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
