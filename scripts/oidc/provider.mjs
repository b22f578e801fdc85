// A real OpenID provider for Ward's sign-in tests: npm `oidc-provider` (a certified
// implementation), on 127.0.0.1, issuing JWT access tokens by the client-credentials grant
// with resource indicators. Each test client stands for one person of a provider: its
// token carries that person's provider, groups (roles) and clinician id or MRN, the way a
// Cognito user pool's tokens do.
//
// Beside the provider's own endpoints, /test/* lets a test:
//   POST /test/rotate          switch to a new signing key (the old one stays published)
//   GET  /test/token?case=...  tokens a real provider never issues, signed with its own
//                              current key where a key signs at all: expired,
//                              not-yet-valid, wrong-issuer, wrong-audience, none,
//                              hs256-public-key, unknown-kid
//   GET  /test/stats           how often the key set was fetched
//
// Usage: node provider.mjs PORT  (prints "ready" when it serves)
import crypto from 'node:crypto';
import http from 'node:http';
import Provider from 'oidc-provider';
import * as jose from 'jose';

const port = Number(process.argv[2]);
const issuer = `http://127.0.0.1:${port}`;
const AUDIENCE = 'https://ward.test/api';

function rsaKey(kid) {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' };
}

const keyA = rsaKey('key-a');
const keyB = rsaKey('key-b');
const stranger = rsaKey('key-stranger');

const PEOPLE = {
  'oidc-admin': { 'custom:provider': 'PROVOIDC', 'cognito:groups': ['provider_admin'] },
  'oidc-clinician': {
    'custom:provider': 'PROVOIDC',
    'cognito:groups': ['staff', 'clinician'],
    'custom:clinician_id': 'C1',
  },
  'oidc-front-desk': { 'custom:provider': 'PROVOIDC', 'cognito:groups': ['front_desk'] },
  'oidc-billing': { 'custom:provider': 'PROVOIDC', 'cognito:groups': ['billing'] },
  'oidc-patient': {
    'custom:provider': 'PROVOIDC',
    'cognito:groups': ['patient'],
    'custom:mrn': 'MRN-O1',
  },
  'oidc-other-provider': { 'custom:provider': 'PROV002', 'cognito:groups': ['provider_admin'] },
  'oidc-no-role': { 'custom:provider': 'PROVOIDC', 'cognito:groups': ['staff'] },
};

function configuration(keys) {
  return {
    clients: Object.keys(PEOPLE).map((id) => ({
      client_id: id,
      client_secret: `secret-${id}`,
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
      token_endpoint_auth_method: 'client_secret_post',
      ward_claims: PEOPLE[id],
    })),
    extraClientMetadata: { properties: ['ward_claims'] },
    jwks: { keys },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => AUDIENCE,
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({
          scope: 'api',
          audience: AUDIENCE,
          accessTokenFormat: 'jwt',
          accessTokenTTL: 300,
          jwt: { sign: { alg: 'RS256' } },
        }),
      },
    },
    extraTokenClaims: async (ctx) => ctx.oidc.client?.ward_claims,
  };
}

let signing = keyA;
let provider = new Provider(issuer, configuration([keyA]));
let keySetFetches = 0;

async function crafted(kind) {
  const now = Math.floor(Date.now() / 1000);
  const claims = {
    iss: issuer,
    aud: AUDIENCE,
    sub: 'oidc-admin',
    iat: now,
    exp: now + 300,
    ...PEOPLE['oidc-admin'],
  };
  let key = signing;
  let alg = 'RS256';
  switch (kind) {
    case 'valid':
      break;
    case 'expired':
      claims.iat = now - 900;
      claims.exp = now - 600;
      break;
    case 'not-yet-valid':
      claims.nbf = now + 600;
      claims.exp = now + 900;
      break;
    case 'wrong-issuer':
      claims.iss = 'http://127.0.0.1:1/another-issuer';
      break;
    case 'wrong-audience':
      claims.aud = 'https://another.test/api';
      break;
    case 'unknown-kid':
      key = stranger;
      break;
    case 'none': {
      const part = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
      return `${part({ alg: 'none', typ: 'JWT' })}.${part(claims)}.`;
    }
    case 'hs256-public-key': {
      // The classic confusion: the RSA public key, as PEM, used as an HMAC secret.
      const publicPem = crypto
        .createPublicKey({ key: signing, format: 'jwk' })
        .export({ type: 'spki', format: 'pem' });
      return new jose.SignJWT(claims)
        .setProtectedHeader({ alg: 'HS256', kid: signing.kid })
        .sign(new TextEncoder().encode(publicPem));
    }
    default:
      throw new Error(`unknown case ${kind}`);
  }
  return new jose.SignJWT(claims)
    .setProtectedHeader({ alg, kid: key.kid, typ: 'at+jwt' })
    .sign(await jose.importJWK(key, alg));
}

function answer(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, issuer);
  try {
    if (url.pathname === '/test/rotate' && req.method === 'POST') {
      signing = keyB;
      provider = new Provider(issuer, configuration([keyB, keyA]));
      return answer(res, 200, { signing: signing.kid });
    }
    if (url.pathname === '/test/token') {
      return answer(res, 200, { token: await crafted(url.searchParams.get('case')) });
    }
    if (url.pathname === '/test/stats') {
      return answer(res, 200, { keySetFetches });
    }
    if (url.pathname === '/jwks') {
      keySetFetches += 1;
    }
    return provider.callback()(req, res);
  } catch (error) {
    return answer(res, 500, { error: String(error) });
  }
});

server.listen(port, '127.0.0.1', () => {
  console.log('ready');
});
