// Verifies license tokens the way LicenseChain's Node SDK does: jose's createRemoteJWKSet
// against the served JWKS over HTTP, then jwtVerify with RS256, issuer and audience.
//
//   node verify_jose.mjs <jwks-url> <issuer>  < cases.json
//
// stdin: [{"token": "...", "audience": "..."}, ...], checked in order with ONE remote key
// set (so its cache and its refetch on an unknown kid are exercised).
// stdout: [{"ok": true, "payload": {...}, "header": {...}} | {"ok": false, "code": "..."}]
import { readFileSync } from "node:fs";
import { createRemoteJWKSet, jwtVerify } from "jose";

const [jwksUrl, issuer] = process.argv.slice(2);
const cases = JSON.parse(readFileSync(0, "utf8"));
const jwks = createRemoteJWKSet(new URL(jwksUrl), { cooldownDuration: 0 });

const results = [];
for (const { token, audience } of cases) {
  try {
    const { payload, protectedHeader } = await jwtVerify(token, jwks, {
      algorithms: ["RS256"],
      issuer,
      audience,
    });
    results.push({ ok: true, payload, header: protectedHeader });
  } catch (error) {
    results.push({ ok: false, code: error.code ?? error.name, message: String(error.message) });
  }
}
process.stdout.write(JSON.stringify(results));
