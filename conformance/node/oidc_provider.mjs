// An OIDC provider standing in for Entra ID in the tests: the npm package oidc-provider,
// client-credentials grant only, RS256 JWT access tokens with Entra-shaped issuer paths and
// claims (tid, oid, roles; v2: azp/azpacr, v1: appid/appidacr).
//
//   PORT=8700 HOST=127.0.0.1 TENANT_ID=<guid> AUDIENCE=api://warehouse ISSUER_STYLE=v2|v1 \
//   KEY_FILE=/path/key.json node oidc_provider.mjs
//
// KEY_FILE holds the private signing key as a JWK: read if it exists, else generated and
// written there (the tests sign their own malformed tokens with it). GET /stats tells how
// many times the key set was fetched.

import { createHash, generateKeyPairSync, randomUUID } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import http from "node:http";

import Provider, { errors } from "oidc-provider";

const PORT = Number(process.env.PORT ?? 8700);
const HOST = process.env.HOST ?? "127.0.0.1";
const TENANT = process.env.TENANT_ID ?? "11111111-2222-3333-4444-555555555555";
const AUDIENCE = process.env.AUDIENCE ?? "api://warehouse";
const STYLE = process.env.ISSUER_STYLE ?? "v2";
const KEY_FILE = process.env.KEY_FILE ?? "";

const prefix = STYLE === "v1" ? `/${TENANT}` : `/${TENANT}/v2.0`;
const issuer = STYLE === "v1" ? `http://${HOST}:${PORT}${prefix}/` : `http://${HOST}:${PORT}${prefix}`;

function signingKey() {
  if (KEY_FILE && existsSync(KEY_FILE)) {
    return JSON.parse(readFileSync(KEY_FILE, "utf8"));
  }
  const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const jwk = privateKey.export({ format: "jwk" });
  jwk.kid = createHash("sha256").update(jwk.n).digest("base64url").slice(0, 16);
  jwk.alg = "RS256";
  jwk.use = "sig";
  if (KEY_FILE) {
    writeFileSync(KEY_FILE, JSON.stringify(jwk), { mode: 0o600 });
  }
  return jwk;
}

// Service principals: object ids are fixed so grants can name them.
const apps = {
  "gateway-tests": {
    secret: "gateway-tests-secret",
    oid: "aaaaaaaa-0000-0000-0000-000000000001",
    roles: ["Warehouse.Read", "Warehouse.Write"],
  },
  "readonly-app": {
    secret: "readonly-app-secret",
    oid: "aaaaaaaa-0000-0000-0000-000000000002",
    roles: ["Warehouse.Read"],
  },
  "no-roles-app": {
    secret: "no-roles-app-secret",
    oid: "aaaaaaaa-0000-0000-0000-000000000003",
    roles: [],
  },
};

const configuration = {
  clients: Object.entries(apps).map(([id, app]) => ({
    client_id: id,
    client_secret: app.secret,
    grant_types: ["client_credentials"],
    redirect_uris: [],
    response_types: [],
    token_endpoint_auth_method: "client_secret_basic",
  })),
  clientAuthMethods: ["client_secret_basic", "client_secret_post"],
  features: {
    clientCredentials: { enabled: true },
    devInteractions: { enabled: false },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => AUDIENCE,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource) => {
        if (resource !== AUDIENCE) {
          throw new errors.InvalidTarget(`unknown resource ${resource}`);
        }
        return {
          scope: "sql",
          audience: AUDIENCE,
          accessTokenTTL: 3600,
          accessTokenFormat: "jwt",
          jwt: { sign: { alg: "RS256" } },
        };
      },
    },
  },
  scopes: ["sql"],
  jwks: { keys: [signingKey()] },
  extraTokenClaims: (ctx, token) => {
    const app = apps[token.clientId];
    if (!app) return {};
    const caller =
      STYLE === "v1"
        ? { ver: "1.0", appid: token.clientId, appidacr: "1" }
        : { ver: "2.0", azp: token.clientId, azpacr: "1" };
    return { tid: TENANT, oid: app.oid, roles: app.roles, idtyp: "app", uti: randomUUID(), ...caller };
  },
};

const provider = new Provider(issuer, configuration);
provider.proxy = false;
const callback = provider.callback();
let jwksFetches = 0;

const server = http.createServer((req, res) => {
  if (req.url === "/stats") {
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ jwks_fetches: jwksFetches, issuer }));
    return;
  }
  if (!req.url.startsWith(prefix)) {
    res.statusCode = 404;
    res.end("not found");
    return;
  }
  req.originalUrl = req.url;
  req.url = req.url.slice(prefix.length) || "/";
  if (req.url === "/jwks") jwksFetches += 1;
  callback(req, res);
});
server.listen(PORT, HOST, () => {
  console.log(`oidc provider ready: ${issuer}`);
});
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
