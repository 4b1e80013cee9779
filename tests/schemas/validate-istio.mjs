// Validates Istio resources against Istio's published CRD schemas, as packaged by
// @kubernetes-models/istio.
//
//   node tests/schemas/validate-istio.mjs NODE_MODULES < resources.json
//
// Reads a JSON array of resources; prints one line per resource that does not validate and
// exits 1 if any does (2 when a kind is not one of Istio's).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const modules = process.argv[2];
if (!modules) {
  console.error("usage: validate-istio.mjs NODE_MODULES < resources.json");
  process.exit(2);
}
const resources = JSON.parse(readFileSync(0, "utf8"));
let failed = 0;
for (const resource of resources) {
  const [group, version] = String(resource.apiVersion).split("/");
  const name = `${resource.kind} ${resource.metadata?.namespace}/${resource.metadata?.name}`;
  const file = join(modules, "@kubernetes-models/istio", group, version, `${resource.kind}.js`);
  let Model;
  try {
    ({ [resource.kind]: Model } = await import(pathToFileURL(file).href));
  } catch (error) {
    console.error(`${name}: no schema for ${resource.apiVersion} ${resource.kind}: ${error.message}`);
    process.exit(2);
  }
  try {
    new Model(resource).validate();
    console.log(`${name}: valid`);
  } catch (error) {
    console.log(`${name}: ${error.message}`);
    failed += 1;
  }
}
process.exit(failed ? 1 : 0);
